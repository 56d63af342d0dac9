/* wcgi PHP-on-WASI compat header.
 *
 * build.sh force-includes this file (-include wasi_compat.h) into every PHP
 * translation unit at *make* time only, so that configure's feature checks
 * still see the real wasi-libc and switch off what WASI does not have.
 *
 * Debian bookworm's wasi-libc (git 2022-05-10) hides a number of POSIX
 * prototypes behind __wasilibc_unmodified_upstream (sockets, dup, uid/gid,
 * ...) and lacks some functions entirely (umask, chmod, realpath, ...).
 * PHP references them in code that is compiled but, on WASI, never succeeds
 * at run time.  Declaring them here and implementing them in wasi_stubs.c as
 * "fail with ENOSYS" (or "uid 0" for the identity queries) keeps the PHP
 * sources untouched and makes the PHP functions built on top of them return
 * false / emit a warning instead of trapping.
 *
 * Our own headers for files wasi-libc does not ship (netdb.h, pwd.h, grp.h,
 * setjmp.h, syslog.h, sys/wait.h) are in wasi/include/ (also make time only).
 *
 * Written for the wcgi project; see ../README.md.
 */
#ifndef WCGI_WASI_COMPAT_H
#define WCGI_WASI_COMPAT_H
#ifdef __wasi__

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- sockets: declared by upstream musl, hidden by wasi-libc (ENOSYS) --- */
int socket(int, int, int);
int socketpair(int, int, int, int[2]);
int bind(int, const struct sockaddr *, socklen_t);
int connect(int, const struct sockaddr *, socklen_t);
int listen(int, int);
int accept(int, struct sockaddr *__restrict, socklen_t *__restrict);
int getsockname(int, struct sockaddr *__restrict, socklen_t *__restrict);
int getpeername(int, struct sockaddr *__restrict, socklen_t *__restrict);
int setsockopt(int, int, int, const void *, socklen_t);
int getsockopt(int, int, int, void *__restrict, socklen_t *__restrict);
ssize_t sendto(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
ssize_t recvfrom(int, void *__restrict, size_t, int, struct sockaddr *__restrict, socklen_t *__restrict);
#ifndef SO_ERROR
#define SO_ERROR 4
#endif
#ifndef SOL_IP
#define SOL_IP 0
#endif
#ifndef MSG_OOB
#define MSG_OOB 0x0001
#endif
/* wasi-libc defines AF_UNIX but its struct sockaddr_un has no sun_path:
 * there are no Unix-domain sockets on WASI.  Undefining the constants makes
 * PHP compile its "platform without AF_UNIX" code paths. */
#undef AF_UNIX
#undef AF_LOCAL
#undef AF_FILE
#undef PF_UNIX
#undef PF_LOCAL
#undef PF_FILE

/* poll(): WASI has no out-of-band / priority data. */
#include <poll.h>
#ifndef POLLPRI
#define POLLPRI 0
#endif

/* fcntl() record locks: wasi-libc has struct flock but not the commands.
 * With these (musl's values) PHP's flock() emulation compiles; wasi-libc's
 * fcntl() rejects the commands with EINVAL (patch 0008 makes flock() grant
 * advisory locks instead). */
#include <fcntl.h>
#ifndef F_GETLK
#define F_GETLK  5
#define F_SETLK  6
#define F_SETLKW 7
#endif
#ifndef F_RDLCK
#define F_RDLCK 0
#define F_WRLCK 1
#define F_UNLCK 2
#endif

/* --- file descriptors / files --- */
int dup(int);
int dup2(int, int);
int pipe(int[2]);
mode_t umask(mode_t);
int chmod(const char *, mode_t);
int fchmod(int, mode_t);
int chown(const char *, uid_t, gid_t);
int fchown(int, uid_t, gid_t);
int lchown(const char *, uid_t, gid_t);
int mkfifo(const char *, mode_t);
int mknod(const char *, mode_t, dev_t);

/* --- identity: WASI has no users; everything runs as uid/gid 0 --- */
uid_t getuid(void);
uid_t geteuid(void);
gid_t getgid(void);
gid_t getegid(void);
pid_t getppid(void);
int setuid(uid_t);
int setgid(gid_t);
int getgroups(int, gid_t[]);
int gethostname(char *, size_t);

/* gethostname() is in wasi_stubs.c (ENOSYS).  configure's check for it
 * cannot be pre-seeded (PHP_CHECK_FUNC resets the cache variable), so say
 * so here: PHP's gethostname() then exists and returns false. */
#ifndef HAVE_GETHOSTNAME
#define HAVE_GETHOSTNAME 1
#endif

/* --- processes: none on WASI (ENOSYS) --- */
pid_t fork(void);
int execv(const char *, char *const[]);
int execvp(const char *, char *const[]);
int execve(const char *, char *const[], char *const[]);
int execl(const char *, const char *, ...);
int execle(const char *, const char *, ...);
FILE *popen(const char *, const char *);
int pclose(FILE *);
int kill(pid_t, int);
pid_t setsid(void);
unsigned alarm(unsigned);

#ifdef __cplusplus
}
#endif

/* Our headers for what wasi-libc lacks (wasi/include): PHP uses struct
 * passwd / struct group and the LOG_* constants even where it does not
 * include these headers itself. */
#include <pwd.h>
#include <grp.h>
#include <syslog.h>

/* wasi-libc hides P_tmpdir ("WASI has no temp directories").  PHP then
 * reports an empty sys_get_temp_dir(); use the Unix default "/tmp" (the
 * host maps a writable /tmp, or sets TMPDIR / sys_temp_dir). */
#ifndef P_tmpdir
#define P_tmpdir "/tmp"
#endif
#endif /* __wasi__ */
#endif /* WCGI_WASI_COMPAT_H */
