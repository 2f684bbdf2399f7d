/*
 * log.h - one line per event on stderr: time, level, program, message.
 */
#ifndef CAS_LOG_H
#define CAS_LOG_H

enum cas_log_level { CAS_LOG_DEBUG, CAS_LOG_INFO, CAS_LOG_WARN, CAS_LOG_ERROR };

void cas_log_init(const char *program);
/* Accepts debug, info, warn, error; -EINVAL otherwise. */
int cas_log_set_level(const char *name);
int cas_log_enabled(enum cas_log_level level);
void cas_log(enum cas_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) cas_log(CAS_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) cas_log(CAS_LOG_INFO, __VA_ARGS__)
#define log_warn(...) cas_log(CAS_LOG_WARN, __VA_ARGS__)
#define log_error(...) cas_log(CAS_LOG_ERROR, __VA_ARGS__)

#endif
