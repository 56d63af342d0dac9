/* wcgi compat: <sys/wait.h> for wasm32-wasi (wasi-libc has none).
 * There are no child processes on WASI: fork() fails with ENOSYS (see
 * wasi_stubs.c), so PHP's proc_open() & co. compile and report failure at
 * run time; waitpid() never finds a child. */
#ifndef WCGI_WASI_SYS_WAIT_H
#define WCGI_WASI_SYS_WAIT_H
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif
#define WNOHANG    1
#define WUNTRACED  2
#define WEXITSTATUS(s) (((s) & 0xff00) >> 8)
#define WTERMSIG(s)    ((s) & 0x7f)
#define WSTOPSIG(s)    WEXITSTATUS(s)
#define WIFEXITED(s)   (!WTERMSIG(s))
#define WIFSTOPPED(s)  ((short)((((s)&0xffff)*0x10001)>>8) > 0x7f00)
#define WIFSIGNALED(s) (((s)&0xffff)-1U < 0xffu)
pid_t wait(int *);
pid_t waitpid(pid_t, int *, int);
#ifdef __cplusplus
}
#endif
#endif
