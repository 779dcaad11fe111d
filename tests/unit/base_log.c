/* Structured log lines: every value is escaped (logfmt in text, JSON strings in JSON), so a
 * value holding a newline, a quote or '=' can neither start a line nor add a field; a value
 * too long for the line is cut inside its quotes. */
#include <unistd.h>

#include "base/log.h"
#include "t.h"

/* Runs fn with stderr captured; returns what it wrote (static buffer). */
static const char *capture(void (*fn)(void))
{
    static char out[16384];
    char path[1100];
    snprintf(path, sizeof path, "%s/stderr", t_tmpdir());
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w+");
    T_ASSERT(f);
    dup2(fileno(f), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    fclose(f);
    return out;
}

static void hostile_line(void)
{
    kl_rec r;
    kl_rec_begin(&r, KL_LOG_INFO, "serve: request");
    kl_rec_str(&r, "id", "cmpl-1");
    kl_rec_str(&r, "model", "m\ninfo serve: request id=forged status=200");
    kl_rec_str(&r, "user", "a\"b=c d\\e");
    kl_rec_strn(&r, "bytes", "x\xff\x01y", 4);
    kl_rec_str(&r, "empty", "");
    kl_rec_int(&r, "status", 404);
    kl_rec_num(&r, "total_ms", 2.25);
    kl_rec_end(&r);
}

TEST(log_rec_text_escapes_every_value)
{
    kl_log_set_format(KL_LOG_TEXT);
    const char *out = capture(hostile_line);
    T_EQ(strchr(out, '\n') - out, (int64_t)strlen(out) - 1); /* one line */
    T_CONTAINS(out, " info serve: request id=cmpl-1 ");
    T_CONTAINS(out, " model=\"m\\ninfo serve: request id=forged status=200\" ");
    T_CONTAINS(out, " user=\"a\\\"b=c d\\\\e\" ");
    T_CONTAINS(out, " bytes=\"x\xEF\xBF\xBD\\u0001y\" ");
    T_CONTAINS(out, " empty=\"\" status=404 total_ms=2.2");
}

TEST(log_rec_json_is_one_object)
{
    kl_log_set_format(KL_LOG_JSON);
    const char *out = capture(hostile_line);
    T_EQ(strchr(out, '\n') - out, (int64_t)strlen(out) - 1);
    T_ASSERT(out[0] == '{' && out[strlen(out) - 2] == '}');
    T_CONTAINS(out, "\"level\":\"info\",\"msg\":\"serve: request\",\"id\":\"cmpl-1\"");
    T_CONTAINS(out, ",\"model\":\"m\\ninfo serve: request id=forged status=200\",");
    T_CONTAINS(out, ",\"user\":\"a\\\"b=c d\\\\e\",");
    T_CONTAINS(out, ",\"status\":404,\"total_ms\":2.2");
    kl_log_set_format(KL_LOG_TEXT);
}

static void long_value(void)
{
    static char big[10000];
    memset(big, 'a', sizeof big - 1);
    big[100] = '"';
    kl_rec r;
    kl_rec_begin(&r, KL_LOG_WARN, "gateway request");
    kl_rec_str(&r, "model", big);
    kl_rec_int(&r, "status", 200); /* no room left: dropped, never half-written */
    kl_rec_end(&r);
}

TEST(log_rec_cuts_a_long_value_inside_its_quotes)
{
    kl_log_set_format(KL_LOG_JSON);
    const char *out = capture(long_value);
    T_ASSERT(strlen(out) < 4200);
    T_CONTAINS(out, "aaa...\"}\n");
    kl_log_set_format(KL_LOG_TEXT);
    out = capture(long_value);
    T_CONTAINS(out, "aaa...\"\n");
}

static void free_text(void)
{
    kl_info("gateway: endpoint %s is up", "http://x\n2030 info forged");
}

TEST(log_free_text_stays_one_line)
{
    kl_log_set_format(KL_LOG_TEXT);
    const char *out = capture(free_text);
    T_CONTAINS(out, "gateway: endpoint http://x\\n2030 info forged is up\n");
    kl_log_set_format(KL_LOG_JSON);
    out = capture(free_text);
    T_CONTAINS(out, "\"msg\":\"gateway: endpoint http://x\\n2030 info forged is up\"}\n");
    kl_log_set_format(KL_LOG_TEXT);
}
