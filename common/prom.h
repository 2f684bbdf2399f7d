/*
 * prom.h - pieces of the Prometheus text exposition format (version 0.0.4)
 * that every daemon's /metrics shares: label-value escaping, metric
 * headers, and the standard process metrics and build info.
 *
 * Format rules (prometheus.io "Exposition formats"): a label value escapes
 * backslash, double quote and line feed; every series appears once.
 */
#ifndef CAS_PROM_H
#define CAS_PROM_H

#include "buf.h"

/* Appends s as a label value (without the quotes), escaped. */
void prom_label_value(struct cas_buf *out, const char *s);
/* "# HELP name help\n# TYPE name type\n". */
void prom_header(struct cas_buf *out, const char *name, const char *type, const char *help);
/*
 * The standard process metrics of this process, read from /proc/self:
 * process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds; and cas_build_info{version,program} 1.
 * A figure that cannot be read is left out.
 */
void prom_process_metrics(struct cas_buf *out);

#endif
