/* cli/args.c: the option table parser and the help printer (see args.h). */
#include "cli/args.h"

#include <stdarg.h>
#include <string.h>

#define HELP_WIDTH  100 /* fold help lines here */
#define HELP_INDENT 28  /* the column where an option's description starts */

void cli_args_init(cli_args *a, const cli_cmd *cmd, int argc, char **argv)
{
    *a = (cli_args){.cmd = cmd, .argc = argc, .argv = argv, .i = 1};
}

int cli_usage_error(const cli_cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln %s: ", c->name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'kiln %s --help' for the options.\n", c->name);
    return 2;
}

static const cli_opt *find_long(const cli_cmd *c, const char *name, size_t len)
{
    for (const cli_opt *o = c->opts; o && o->key; o++)
        if (o->name && strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
    return NULL;
}

static const cli_opt *find_short(const cli_cmd *c, char ch)
{
    for (const cli_opt *o = c->opts; o && o->key; o++)
        if (o->key < CLI_LONG && o->key == (unsigned char)ch) return o;
    return NULL;
}

static int fail(cli_args *a, int status)
{
    a->status = status;
    return CLI_EXIT;
}

int cli_args_next(cli_args *a, const char **val)
{
    *val = NULL;
    if (a->i >= a->argc) return CLI_END;
    const char *s = a->argv[a->i++];
    if (a->only_pos || s[0] != '-' || !s[1]) { /* "-" alone is an argument (stdin) */
        *val = s;
        return CLI_ARG;
    }
    if (!strcmp(s, "--")) {
        a->only_pos = true;
        return cli_args_next(a, val);
    }
    const cli_opt *o;
    const char *inline_val = NULL;
    if (s[1] == '-') {
        const char *eq = strchr(s + 2, '=');
        size_t len = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
        o = find_long(a->cmd, s + 2, len);
        if (!o && len == 4 && !strncmp(s + 2, "help", 4) && !eq) {
            cli_help_print(a->cmd, stdout);
            return fail(a, 0);
        }
        if (!o) return fail(a, cli_usage_error(a->cmd, "unknown option '%s'", s));
        if (eq && !o->arg) return fail(a, cli_usage_error(a->cmd, "--%s takes no value", o->name));
        if (eq) inline_val = eq + 1;
    } else {
        o = find_short(a->cmd, s[1]);
        if (!o && s[1] == 'h' && !s[2]) {
            cli_help_print(a->cmd, stdout);
            return fail(a, 0);
        }
        if (!o || (s[2] && !o->arg))
            return fail(a, cli_usage_error(a->cmd, "unknown option '%s'", s));
        if (s[2]) inline_val = s + 2;
    }
    if (o->key < CLI_LONG && s[1] != '-')
        snprintf(a->opt, sizeof a->opt, "-%c", o->key);
    else
        snprintf(a->opt, sizeof a->opt, "--%s", o->name);
    if (o->arg && o->arg[0] == '[' && !inline_val) { /* an optional value: "--sweep [LIST]" */
        if (a->i < a->argc && a->argv[a->i][0] != '-') inline_val = a->argv[a->i++];
        *val = inline_val;
        return o->key;
    }
    if (o->arg && !inline_val) {
        if (a->i >= a->argc)
            return fail(a, cli_usage_error(a->cmd, "%s needs a value (%s)", s, o->arg));
        inline_val = a->argv[a->i++];
    }
    *val = inline_val;
    return o->key;
}

/* Prints an option's help from column col (the cursor is there), folding at HELP_WIDTH to
 * HELP_INDENT. */
static void fold(FILE *f, const char *text, int col)
{
    bool first = true; /* the first word of the current line */
    for (const char *p = text; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        int w = (int)strcspn(p, " ");
        if (!first && col + 1 + w > HELP_WIDTH) {
            fprintf(f, "\n%*s", HELP_INDENT, "");
            col = HELP_INDENT;
            first = true;
        }
        if (!first) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, (size_t)w, f);
        col += w;
        p += w;
        first = false;
    }
    fputc('\n', f);
}

void cli_help_print(const cli_cmd *c, FILE *f)
{
    fprintf(f, "usage: kiln %s %s\n", c->name, c->usage);
    if (c->about) fprintf(f, "\n%s", c->about); /* written folded, each line ends in \n */
    if (c->opts && c->opts->key) {
        fprintf(f, "\noptions:\n");
        for (const cli_opt *o = c->opts; o->key; o++) {
            char left[96];
            int n;
            if (o->key < CLI_LONG && o->name)
                n = snprintf(left, sizeof left, "  -%c, --%s", o->key, o->name);
            else if (o->key < CLI_LONG)
                n = snprintf(left, sizeof left, "  -%c", o->key);
            else
                n = snprintf(left, sizeof left, "      --%s", o->name);
            if (o->arg && n < (int)sizeof left)
                n += snprintf(left + n, sizeof left - (size_t)n, " %s", o->arg);
            fputs(left, f);
            if (n + 2 > HELP_INDENT) /* a long option: its text on the next line */
                fprintf(f, "\n%*s", HELP_INDENT, "");
            else
                fprintf(f, "%*s", HELP_INDENT - n, "");
            fold(f, o->help, HELP_INDENT);
        }
        fprintf(f, "  -h, --help                this help\n");
    }
    if (c->notes) fprintf(f, "\n%s", c->notes);
}
