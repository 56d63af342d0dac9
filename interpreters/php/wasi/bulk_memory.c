/* memcpy, memmove and memset with WebAssembly's bulk-memory instructions.
 *
 * Debian's wasi-libc is built for the WebAssembly MVP, so its memcpy & co. move memory a word
 * at a time in a wasm loop. Built with -mbulk-memory, __builtin_memcpy & co. become single
 * memory.copy / memory.fill instructions, which the engine runs as the host's own memmove and
 * memset. Those cost a call into the engine, so short runs (most of PHP's: small strings,
 * zvals, buckets) keep a plain loop. Linked ahead of libc.a, these definitions replace its own.
 *
 * Built with -fno-builtin, so that the compiler does not turn the loops below back into calls
 * to the functions they implement. */
#include <stddef.h>
#include <stdint.h>

/* Below this many bytes the loop is cheaper than a call into the engine. */
#define BULK_THRESHOLD 32

void *memcpy(void *restrict dest, const void *restrict src, size_t n)
{
    if (n >= BULK_THRESHOLD)
        return __builtin_memcpy(dest, src, n);
    unsigned char *d = dest;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dest;
}

void *memmove(void *dest, const void *src, size_t n)
{
    if (n >= BULK_THRESHOLD)
        return __builtin_memmove(dest, src, n);
    unsigned char *d = dest;
    const unsigned char *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        d += n;
        s += n;
        while (n--)
            *--d = *--s;
    }
    return dest;
}

void *memset(void *dest, int c, size_t n)
{
    if (n >= BULK_THRESHOLD)
        return __builtin_memset(dest, c, n);
    unsigned char *d = dest;
    while (n--)
        *d++ = (unsigned char)c;
    return dest;
}
