/* net/procmetrics.h: the process figures every Prometheus client library exports
 * (process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds), read from /proc for the
 * /metrics of kiln serve and kiln gateway. */
#ifndef KILN_NET_PROCMETRICS_H
#define KILN_NET_PROCMETRICS_H
#include <stddef.h>

/* Writes the process metrics, with their HELP and TYPE lines, in the Prometheus text format
 * into buf (NUL-terminated). Returns the length written; a figure /proc cannot give is left
 * out. Bounded: one read of /proc/self/stat and /proc/stat, one pass over /proc/self/fd. */
size_t kl_proc_metrics(char *buf, size_t cap);
#endif
