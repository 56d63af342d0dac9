/* wcgi PHP-on-WASI stub library (libwcgi_wasi_stubs.a).
 *
 * Implements the POSIX functions declared in wasi_compat.h / wasi/include
 * that Debian bookworm's wasi-libc (git 2022-05-10) does not provide.
 * WASI preview 1 has no processes, no sockets beyond pre-opened ones, no
 * resolver, no users and no permission bits, so:
 *   - process, socket, resolver and permission calls fail with ENOSYS (or
 *     the function's documented "not found" value), and PHP turns that into
 *     false + a warning;
 *   - identity queries answer uid/gid 0 (the module is its own only user);
 *   - syslog() writes to stderr, which the CGI host logs.
 * Nothing here pretends an operation succeeded when it did not.
 *
 * Written for the wcgi project; see ../README.md.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "wasi_compat.h"
#include <netdb.h>
#include <sys/wait.h>

#define FAIL(ret) { errno = ENOSYS; return ret; }

/* sockets */
int socket(int d, int t, int p) FAIL(-1)
int socketpair(int d, int t, int p, int sv[2]) FAIL(-1)
int bind(int s, const struct sockaddr *a, socklen_t l) FAIL(-1)
int connect(int s, const struct sockaddr *a, socklen_t l) FAIL(-1)
int listen(int s, int b) FAIL(-1)
int accept(int s, struct sockaddr *a, socklen_t *l) FAIL(-1)
int getsockname(int s, struct sockaddr *a, socklen_t *l) FAIL(-1)
int getpeername(int s, struct sockaddr *a, socklen_t *l) FAIL(-1)
int setsockopt(int s, int lv, int o, const void *v, socklen_t l) FAIL(-1)
ssize_t sendto(int s, const void *b, size_t n, int f, const struct sockaddr *a, socklen_t l) FAIL(-1)
ssize_t recvfrom(int s, void *b, size_t n, int f, struct sockaddr *a, socklen_t *l) FAIL(-1)

/* resolver: nothing resolves */
int h_errno = 0;
struct hostent *gethostbyname(const char *n) { (void)n; h_errno = NO_RECOVERY; return NULL; }
struct hostent *gethostbyaddr(const void *a, socklen_t l, int t) { (void)a; (void)l; (void)t; h_errno = NO_RECOVERY; return NULL; }
struct servent *getservbyname(const char *n, const char *p) { (void)n; (void)p; return NULL; }
struct servent *getservbyport(int port, const char *p) { (void)port; (void)p; return NULL; }
struct protoent *getprotobyname(const char *n) { (void)n; return NULL; }
struct protoent *getprotobynumber(int p) { (void)p; return NULL; }
int getaddrinfo(const char *n, const char *s, const struct addrinfo *h, struct addrinfo **r)
{
	(void)n; (void)s; (void)h;
	if (r) *r = NULL;
	errno = ENOSYS;
	return EAI_SYSTEM;
}
void freeaddrinfo(struct addrinfo *a) { (void)a; }
const char *gai_strerror(int e)
{
	return e == EAI_SYSTEM ? "Name resolution is not available on WASI" : "Name resolution failed";
}
int getnameinfo(const struct sockaddr *a, socklen_t al, char *h, socklen_t hl, char *s, socklen_t sl, int f)
{
	(void)a; (void)al; (void)h; (void)hl; (void)s; (void)sl; (void)f;
	errno = ENOSYS;
	return EAI_SYSTEM;
}
const char *hstrerror(int e) { (void)e; return "Name resolution is not available on WASI"; }

/* file descriptors and files */
int dup(int fd) FAIL(-1)
int dup2(int fd, int fd2) FAIL(-1)
int pipe(int fds[2]) FAIL(-1)
/* There is no process umask: report the conventional 022 and ignore changes. */
mode_t umask(mode_t m) { (void)m; return 022; }
/* WASI files carry no permission bits, so there is nothing to change: succeed for files that
 * exist, as PHP on Windows does. Failing made WordPress and its SQLite plugin warn on every
 * new directory and upload. */
int chmod(const char *p, mode_t m) { struct stat st; (void)m; return stat(p, &st); }
int fchmod(int fd, mode_t m) { struct stat st; (void)m; return fstat(fd, &st); }
int chown(const char *p, uid_t u, gid_t g) FAIL(-1)
int fchown(int fd, uid_t u, gid_t g) FAIL(-1)
int lchown(const char *p, uid_t u, gid_t g) FAIL(-1)
int mkfifo(const char *p, mode_t m) FAIL(-1)
int mknod(const char *p, mode_t m, dev_t d) FAIL(-1)

/* identity */
uid_t getuid(void) { return 0; }
uid_t geteuid(void) { return 0; }
gid_t getgid(void) { return 0; }
gid_t getegid(void) { return 0; }
pid_t getppid(void) { return 0; }
int setuid(uid_t u) { if (u == 0) return 0; errno = EPERM; return -1; }
int setgid(gid_t g) { if (g == 0) return 0; errno = EPERM; return -1; }
int getgroups(int n, gid_t l[]) { (void)n; (void)l; return 0; }
int gethostname(char *n, size_t l) FAIL(-1)

struct passwd *getpwnam(const char *n) { (void)n; return NULL; }
struct passwd *getpwuid(uid_t u) { (void)u; return NULL; }
int getpwnam_r(const char *n, struct passwd *p, char *b, size_t l, struct passwd **r) { (void)n; (void)p; (void)b; (void)l; *r = NULL; return 0; }
int getpwuid_r(uid_t u, struct passwd *p, char *b, size_t l, struct passwd **r) { (void)u; (void)p; (void)b; (void)l; *r = NULL; return 0; }
struct group *getgrnam(const char *n) { (void)n; return NULL; }
struct group *getgrgid(gid_t g) { (void)g; return NULL; }
int getgrnam_r(const char *n, struct group *p, char *b, size_t l, struct group **r) { (void)n; (void)p; (void)b; (void)l; *r = NULL; return 0; }
int getgrgid_r(gid_t g, struct group *p, char *b, size_t l, struct group **r) { (void)g; (void)p; (void)b; (void)l; *r = NULL; return 0; }

/* processes */
pid_t fork(void) FAIL(-1)
int execv(const char *p, char *const a[]) FAIL(-1)
int execvp(const char *p, char *const a[]) FAIL(-1)
int execve(const char *p, char *const a[], char *const e[]) FAIL(-1)
int execl(const char *p, const char *a, ...) FAIL(-1)
int execle(const char *p, const char *a, ...) FAIL(-1)
FILE *popen(const char *c, const char *m) FAIL(NULL)
int pclose(FILE *f) FAIL(-1)
int kill(pid_t p, int s) FAIL(-1)
pid_t setsid(void) FAIL(-1)
unsigned alarm(unsigned s) { (void)s; return 0; }
pid_t wait(int *st) { (void)st; errno = ECHILD; return -1; }
pid_t waitpid(pid_t p, int *st, int o) { (void)p; (void)st; (void)o; errno = ECHILD; return -1; }

/* syslog: to stderr */
static const char *syslog_ident = "php";
void openlog(const char *ident, int o, int f) { (void)o; (void)f; if (ident) syslog_ident = ident; }
void closelog(void) { }
void vsyslog(int prio, const char *fmt, va_list ap)
{
	(void)prio;
	fprintf(stderr, "%s: ", syslog_ident);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}
void syslog(int prio, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsyslog(prio, fmt, ap);
	va_end(ap);
}

/* mkstemp() is declared by wasi-libc but missing from its libc.a.  This one
 * is real (not a stub): random suffix from getentropy(), O_CREAT|O_EXCL.
 * build.sh tells configure it exists (ac_cv_func_mkstemp=yes) so that PHP's
 * temporary files (uploads, tmpfile(), tempnam()) use it. */
#include <fcntl.h>
int mkstemp(char *tmpl)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	size_t len = strlen(tmpl);
	if (len < 6 || memcmp(tmpl + len - 6, "XXXXXX", 6) != 0) {
		errno = EINVAL;
		return -1;
	}
	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned char rnd[6];
		if (getentropy(rnd, sizeof(rnd)) != 0) {
			return -1;
		}
		for (int i = 0; i < 6; i++) {
			tmpl[len - 6 + i] = chars[rnd[i] % (sizeof(chars) - 1)];
		}
		int fd = open(tmpl, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd >= 0 || errno != EEXIST) {
			return fd;
		}
	}
	errno = EEXIST;
	return -1;
}

/* No descriptor table limit to query on WASI; report the usual default. */
int getdtablesize(void) { return 1024; }
