#ifndef CFLEETSYS_H
#define CFLEETSYS_H

#include <sys/types.h>

/// How to start a child. Everything between fork and exec happens in C, because only
/// async-signal-safe calls are allowed there in a multi-threaded process.
typedef struct {
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *cwd;            /* NULL: inherit */
    int stdin_fd;               /* -1: /dev/null */
    int stdout_fd;              /* -1: /dev/null */
    int stderr_fd;              /* -1: /dev/null */
    int switch_user;            /* non-zero: setgroups(0), setgid(gid), setuid(uid) */
    uid_t uid;
    gid_t gid;
    int new_session;            /* non-zero: setsid(), so terminal and group signals never reach it */
    int oom_score_adj;          /* applied when set_oom_score_adj is non-zero */
    int set_oom_score_adj;
    long nofile_limit;          /* > 0: RLIMIT_NOFILE soft and hard */
    int parent_death_signal;    /* 0: none (tenants must outlive the daemon) */
    int background;             /* non-zero: nice 19 and the idle I/O class */
    const int *cgroup_fds;      /* open cgroup.procs files the child writes its pid into before */
    int cgroup_fd_count;        /* anything else, so it never runs outside its cgroups */
} pgf_spawn_options;

/// Forks and execs. Returns 0 and sets *pid, or an errno: from fork, or from the child's
/// preparation or exec (reported back through a close-on-exec pipe). *failed_step names the
/// step that failed in the child ("exec", "setuid", ...), or NULL.
int pgf_spawn(const pgf_spawn_options *options, pid_t *pid, const char **failed_step);

/// pidfd_open(2): a descriptor that becomes readable when the process exits. -1 and errno on failure.
int pgf_pidfd_open(pid_t pid);

/// Waits (blocking) for the child `pid`; returns its raw wait status, or -1 and errno.
int pgf_wait_child(pid_t pid, int *status);

int pgf_wifexited(int status);
int pgf_wexitstatus(int status);
int pgf_wifsignaled(int status);
int pgf_wtermsig(int status);

/// A memfd for capturing a child's output or feeding its input.
int pgf_memfd(const char *name);

/// A non-blocking, close-on-exec eventfd for waking a poll loop.
int pgf_eventfd(void);

/// syncfs(2) on the filesystem holding fd.
int pgf_syncfs(int fd);

/// lchown(2) of `path` and everything under it, links not followed. 0, or the first errno.
int pgf_chown_tree(const char *path, uid_t uid, gid_t gid);

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
long pgf_raise_nofile(void);

#endif
