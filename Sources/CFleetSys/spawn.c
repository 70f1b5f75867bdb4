#define _GNU_SOURCE
#include "CFleetSys.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct child_error {
    int err;
    int step;
};

static const char *const steps[] = {
    "exec", "dup2", "setsid", "chdir", "setgroups", "setgid", "setuid", "oom_score_adj", "setrlimit", "prctl", "open /dev/null",
    "setpriority", "cgroup placement",
};

static void report(int fd, int step, int err) {
    struct child_error e = { err, step };
    ssize_t unused = write(fd, &e, sizeof e);
    (void)unused;
    _exit(127);
}

static int write_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        s += w; n -= (size_t)w;
    }
    return 0;
}

/* The decimal digits of v into buf (no terminator); returns the length. Async-signal-safe. */
static int format_int(char *buf, long v) {
    char tmp[24];
    int n = 0, len = 0, neg = v < 0;
    unsigned long u = neg ? (unsigned long)(-v) : (unsigned long)v;
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u && n < 23);
    if (neg) buf[len++] = '-';
    while (n > 0) buf[len++] = tmp[--n];
    return len;
}

static void child(const pgf_spawn_options *o, int errfd) {
    /* First of all: into the tenant's cgroups, so that not one instruction of the child (nor
       anything it forks) runs under the daemon's limits instead of the tenant's. */
    if (o->cgroup_fd_count > 0) {
        char pid[24];
        int len = format_int(pid, (long)getpid());
        for (int i = 0; i < o->cgroup_fd_count; i++) {
            if (write_all(o->cgroup_fds[i], pid, (size_t)len) < 0) report(errfd, 12, errno);
        }
    }
    /* Signal dispositions and masks are inherited across exec; the daemon ignores some. */
    sigset_t all;
    sigemptyset(&all);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        signal(sig, SIG_DFL);
    }
    sigprocmask(SIG_SETMASK, &all, NULL);

    if (o->new_session && setsid() < 0) report(errfd, 2, errno);
    if (o->parent_death_signal > 0 && prctl(PR_SET_PDEATHSIG, o->parent_death_signal) < 0) report(errfd, 9, errno);

    int fds[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };
    int devnull = -1;
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0) {
            if (devnull < 0) {
                devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull < 0) report(errfd, 10, errno);
            }
            fds[i] = devnull;
        }
    }
    /* Move sources out of 0..2 first so dup2 never clobbers one that is still needed. */
    for (int i = 0; i < 3; i++) {
        if (fds[i] <= 2) {
            int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0) report(errfd, 1, errno);
            fds[i] = moved;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(fds[i], i) < 0) report(errfd, 1, errno);
    }
    /* Nothing else of the daemon's leaks into the child: API socket, catalog, other tenants' logs. */
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);

    if (o->nofile_limit > 0) {
        struct rlimit rl = { (rlim_t)o->nofile_limit, (rlim_t)o->nofile_limit };
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) report(errfd, 8, errno);
    }
    if (o->set_oom_score_adj) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0) report(errfd, 7, errno);
        char buf[24];
        int len = format_int(buf, o->oom_score_adj);
        if (write_all(fd, buf, (size_t)len) < 0) report(errfd, 7, errno);
        close(fd);
    }
    if (o->background) {
        /* Lowest CPU priority and the idle I/O class (IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT):
           work nobody waits for yields to the tenants. Set while still root, so it sticks. */
        if (setpriority(PRIO_PROCESS, 0, 19) < 0) report(errfd, 11, errno);
        syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, 3 << 13);
    }
    if (o->switch_user) {
        if (setgroups(0, NULL) < 0) report(errfd, 4, errno);
        if (setgid(o->gid) < 0) report(errfd, 5, errno);
        if (setuid(o->uid) < 0) report(errfd, 6, errno);
    }
    if (o->cwd && chdir(o->cwd) < 0) report(errfd, 3, errno);

    execve(o->path, o->argv, o->envp);
    report(errfd, 0, errno);
}

int pgf_spawn(const pgf_spawn_options *options, pid_t *pid, const char **failed_step) {
    int pipefd[2];
    if (failed_step) *failed_step = NULL;
    if (pipe2(pipefd, O_CLOEXEC) < 0) return errno;

    pid_t p = fork();
    if (p < 0) {
        int err = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return err;
    }
    if (p == 0) {
        close(pipefd[0]);
        child(options, pipefd[1]);
        _exit(127);
    }
    close(pipefd[1]);
    struct child_error e;
    ssize_t n;
    do { n = read(pipefd[0], &e, sizeof e); } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof e) {
        int status;
        while (waitpid(p, &status, 0) < 0 && errno == EINTR) {}
        if (failed_step && e.step >= 0 && e.step < (int)(sizeof steps / sizeof steps[0])) *failed_step = steps[e.step];
        return e.err ? e.err : EIO;
    }
    *pid = p;
    return 0;
}

int pgf_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int pgf_wait_child(pid_t pid, int *status) {
    int r;
    do { r = waitpid(pid, status, 0); } while (r < 0 && errno == EINTR);
    return r;
}

int pgf_wifexited(int status) { return WIFEXITED(status); }
int pgf_wexitstatus(int status) { return WEXITSTATUS(status); }
int pgf_wifsignaled(int status) { return WIFSIGNALED(status); }
int pgf_wtermsig(int status) { return WTERMSIG(status); }

int pgf_memfd(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int pgf_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

int pgf_syncfs(int fd) {
    return syncfs(fd);
}

long pgf_raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    }
    return (long)rl.rlim_cur;
}
