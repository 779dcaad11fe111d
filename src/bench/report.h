/* bench/report.h: a run's results as JSON, as a human table, and files under --out. */
#ifndef KILN_BENCH_REPORT_H
#define KILN_BENCH_REPORT_H
#include <jansson.h>
#include <stdio.h>

#include "bench/bench.h"

/* New JSON objects (NULL on OOM); the caller owns them. */
json_t *kb_config_json(const kb_config *c);
json_t *kb_summary_json(const kb_summary *s);
json_t *kb_records_json(const kb_result *r);

/* Prints a summary as an aligned table: title line, throughput, latencies, errors. */
void kb_print_summary(FILE *f, const char *title, const kb_summary *s, const kb_config *c);

/* Creates dir (and parents) if missing. Returns 0 or KL_EIO "<dir>: <reason>". */
int kb_mkdir_p(const char *dir, kl_err *err);
/* Writes text to dir/name. Returns 0 or KL_EIO "<path>: <reason>". */
int kb_write_file(const char *dir, const char *name, const char *text, kl_err *err);
/* Writes j (indented) to dir/name. Returns 0, KL_EIO or KL_ENOMEM. */
int kb_write_json(const char *dir, const char *name, const json_t *j, kl_err *err);
#endif
