/*
 * Probe program for the strace integration test. Every syscall it makes is
 * deterministic in count, so two separate strace runs of it must agree.
 * It writes the TCP port it listened on to stdout (nothing else).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_usr1(int sig) { (void)sig; }

/* The raw open(2) syscall is used where it exists so that the three
 * ENOENT failures are the only `open` calls in the whole trace (the
 * dynamic loader and libc use openat). */
static int open_missing(const char *path) {
#ifdef SYS_open
    return (int)syscall(SYS_open, path, O_RDONLY);
#else
    return openat(AT_FDCWD, path, O_RDONLY);
#endif
}

static void write_port(unsigned port) {
    char out[8];
    int n = 0;
    char tmp[8];
    do { tmp[n++] = (char)('0' + port % 10); port /= 10; } while (port);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\n';
    if (write(1, out, (size_t)n + 1) < 0) _exit(20);
}

int main(void) {
    for (int i = 0; i < 3; i++)
        if (open_missing("/nonexistent-panther-probe/missing") != -1) return 10;

    int srv = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(srv, (struct sockaddr *)&a, sizeof a) != 0) return 11;
    socklen_t len = sizeof a;
    if (getsockname(srv, (struct sockaddr *)&a, &len) != 0) return 12;
    if (listen(srv, 1) != 0) return 13;
    int cli = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(cli, (struct sockaddr *)&a, sizeof a) != 0) return 14;
    int conn = accept(srv, NULL, NULL);
    if (conn < 0) return 15;
    if (send(cli, "hello", 5, 0) != 5) return 16;
    char buf[16];
    if (recv(conn, buf, sizeof buf, 0) != 5) return 17;
    write_port(ntohs(a.sin_port));

    /* SIGUSR1 stays blocked until the child's sigsuspend, so delivery is
     * deterministic whether kill() runs before or after it. */
    sigset_t blk;
    sigemptyset(&blk);
    sigaddset(&blk, SIGUSR1);
    sigprocmask(SIG_BLOCK, &blk, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: sigsuspend reports EINTR */
    sigaction(SIGUSR1, &sa, NULL);

    pid_t child = fork();
    if (child < 0) return 18;
    if (child == 0) {
        sigset_t empty;
        sigemptyset(&empty);
        sigsuspend(&empty);
        _exit(3);
    }
    kill(child, SIGUSR1);
    int st = 0;
    if (waitpid(child, &st, 0) != child) return 19;

    /* A child that dies inside a syscall: kill(2) on itself never returns,
     * so strace prints `= ?` for it. */
    pid_t victim = fork();
    if (victim < 0) return 21;
    if (victim == 0) {
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int vst = 0;
    if (waitpid(victim, &vst, 0) != victim) return 22;
    if (!WIFSIGNALED(vst) || WTERMSIG(vst) != SIGKILL) return 23;
    close(conn);
    close(cli);
    close(srv);
    return WIFEXITED(st) && WEXITSTATUS(st) == 3 ? 0 : 1;
}
