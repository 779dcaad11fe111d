/* Every form of the command line as a user meets it: `--help`, `-h` and `kiln help FORM` print
 * to stdout with status 0, every option with its meaning; an unknown option or a stray
 * argument is a usage error naming it (status 2); start-up errors say why. The forms are read
 * from `kiln --help` and `kiln model --help`, so a new command is walked without editing this
 * file. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "t.h"

#define MAX_FORMS 64

/* Runs `kiln ARGS`; returns the status and the captured streams (caller frees). */
static int kiln(const char *args, char **out, char **err)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s </dev/null", t_kiln(), args);
    return t_run(cmd, out, err);
}

/* The first word of each indented line after the line containing `header` in text, until a
 * blank line, appended to forms[] with prefix. */
static int list_after(const char *text, const char *header, const char *prefix, char forms[][64],
                      int n)
{
    const char *p = strstr(text, header);
    T_ASSERT(p);
    p = strchr(p, '\n') + 1;
    while (*p == ' ' && n < MAX_FORMS) {
        p += strspn(p, " ");
        size_t w = strcspn(p, " \n");
        snprintf(forms[n++], 64, "%s%.*s", prefix, (int)w, p);
        p = strchr(p, '\n');
        if (!p) break;
        p++;
    }
    return n;
}

/* Every option line of a help text ("  -x, --name VALUE   what it does") has its meaning,
 * on the same line or indented on the next. */
static void options_explained(const char *form, const char *help)
{
    const char *p = strstr(help, "\noptions:\n");
    if (!p) return; /* a form without options */
    p += strlen("\noptions:\n");
    int n = 0;
    while (*p == ' ') {
        const char *eol = strchr(p, '\n');
        T_ASSERT(eol);
        bool is_opt = p[2] == '-' || !strncmp(p, "      --", 8);
        if (is_opt) {
            n++;
            bool same_line = eol - p > 28 && p[27] == ' ' && p[28] != ' ';
            bool next_line = !strncmp(eol + 1, "                            ", 28);
            if (!same_line && !next_line) {
                printf("# kiln %s: an option without its meaning: %.*s\n", form, (int)(eol - p), p);
                T_ASSERT(same_line || next_line);
            }
        }
        p = eol + 1;
    }
    T_ASSERT(n > 0);
}

TEST(cli_help_every_form)
{
    char *out, *err;
    char forms[MAX_FORMS][64] = {""};
    T_EQ(kiln("--help", &out, &err), 0);
    T_CONTAINS(out, "usage: kiln <command>");
    T_STREQ(err, "");
    int n = list_after(out, "commands:", "", forms, 1);
    free(out), free(err);
    T_ASSERT(n >= 9);
    T_EQ(kiln("model --help", &out, &err), 0);
    n = list_after(out, "Model files:", "model ", forms, n);
    free(out), free(err);
    T_ASSERT(n >= 15);
    for (int i = 0; i < n; i++) {
        const char *f = forms[i];
        char args[256], want[128];
        snprintf(want, sizeof want, "usage: kiln %s", *f ? f : "<command>");
        char *first = NULL;
        for (int how = 0; how < 3; how++) {
            if (how == 2)
                snprintf(args, sizeof args, "help %s", f);
            else
                snprintf(args, sizeof args, "%s %s", f, how ? "-h" : "--help");
            int rc = kiln(args, &out, &err);
            if (rc || *err || strncmp(out, want, strlen(want)))
                printf("# kiln %s: status %d, stdout '%.60s', stderr '%.200s'\n", args, rc, out,
                       err);
            T_EQ(rc, 0);
            T_STREQ(err, "");
            T_ASSERT(!strncmp(out, want, strlen(want)));
            if (!first)
                first = out;
            else {
                T_STREQ(out, first); /* the same help, however asked */
                free(out);
            }
            free(err);
        }
        options_explained(f, first);
        free(first);
        if (!*f || !strcmp(f, "model")) continue;
        /* an unknown option: a usage error naming it, nothing on stdout */
        snprintf(args, sizeof args, "%s --no-such-option", f);
        T_EQ(kiln(args, &out, &err), 2);
        T_STREQ(out, "");
        char msg[160];
        snprintf(msg, sizeof msg, "kiln %s: unknown option '--no-such-option'", f);
        T_CONTAINS(err, msg);
        snprintf(msg, sizeof msg, "Try 'kiln %s --help'", f);
        T_CONTAINS(err, msg);
        free(out), free(err);
    }
}

TEST(cli_help_shows_defaults)
{
    static const struct {
        const char *form, *line;
    } want[] = {
        {"serve", "--port N              TCP port; 0 picks a free one (default 8080)"},
        {"serve", "--max-seqs N          sequences decoding together at most (default 64)"},
        {"run", "-n N                      tokens to generate at most (default 128)"},
        {"run", "--temp T              sampling temperature; 0 is greedy (default 0.8)"},
        {"bench", "(default 300)"},
        {"model make", "--dim D               embedding width (default 64)"},
        {"model bench", "(default 512"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char args[128], *out, *err;
        snprintf(args, sizeof args, "%s --help", want[i].form);
        T_EQ(kiln(args, &out, &err), 0);
        T_CONTAINS(out, want[i].line);
        free(out), free(err);
    }
}

TEST(cli_stray_arguments_are_usage_errors)
{
    static const struct {
        const char *args, *msg;
    } bad[] = {
        {"run -m x.gguf -p hi extra", "kiln run: unexpected argument 'extra'"},
        {"bench --url http://127.0.0.1:1 extra", "kiln bench: unexpected argument 'extra'"},
        {"model make --out x.gguf extra", "kiln model make: unexpected argument 'extra'"},
        {"tokenize -m x.gguf extra", "kiln tokenize: unexpected argument 'extra'"},
        {"detokenize -m x.gguf extra", "kiln detokenize: unexpected argument 'extra'"},
        {"perplexity -m x.gguf -f t.txt extra", "kiln perplexity: unexpected argument 'extra'"},
        {"model inspect a.gguf b.gguf", "kiln model inspect: unexpected argument 'b.gguf'"},
        {"model inspect", "kiln model inspect: expected 1 argument, got 0"},
        {"model quantize a b", "kiln model quantize: expected 3 arguments, got 2"},
        {"serve a.gguf b.gguf", "kiln serve: unexpected argument 'b.gguf'"},
        {"serve -m a.gguf b.gguf", "kiln serve: unexpected argument 'b.gguf'"},
        {"gateway a.json b.json", "kiln gateway: unexpected argument 'b.json'"},
        {"serve --port", "kiln serve: --port needs a value"},
        {"run --chat=yes", "kiln run: --chat takes no value"},
        {"model", "kiln model: which subcommand?"},
        {"model frobnicate", "kiln model: unknown subcommand 'frobnicate'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out, *err;
        int rc = kiln(bad[i].args, &out, &err);
        if (rc != 2) printf("# kiln %s: status %d, stderr %s\n", bad[i].args, rc, err);
        T_EQ(rc, 2);
        T_CONTAINS(err, bad[i].msg);
        free(out), free(err);
    }
}

/* A TCP port on 127.0.0.1 held by a listening socket of this process. */
static int hold_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    T_EQ(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    T_EQ(listen(*fd, 1), 0);
    T_EQ(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

TEST(cli_startup_errors_say_why)
{
    int fd, port = hold_port(&fd);
    char args[1024], msg[128], *out, *err;
    snprintf(args, sizeof args, "serve --port %d", port);
    T_EQ(kiln(args, &out, &err), 1);
    snprintf(msg, sizeof msg, "kiln: cannot listen on 127.0.0.1:%d: Address already in use", port);
    T_CONTAINS(err, msg);
    free(out), free(err);

    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/gw.json", t_tmpdir());
    FILE *f = fopen(cfg, "w");
    T_ASSERT(f);
    fprintf(f,
            "{\"listen\": {\"port\": %d}, \"models\": [{\"name\": \"m\", \"pools\": "
            "[{\"endpoints\": [{\"url\": \"http://127.0.0.1:1\"}]}]}]}\n",
            port);
    fclose(f);
    snprintf(args, sizeof args, "gateway %s", cfg);
    T_EQ(kiln(args, &out, &err), 1);
    T_CONTAINS(err, msg);
    free(out), free(err);
    close(fd);

    T_EQ(kiln("serve /nonexistent/model.gguf --port 0", &out, &err), 1);
    T_CONTAINS(err, "kiln: /nonexistent/model.gguf: cannot open: No such file or directory");
    free(out), free(err);
}
