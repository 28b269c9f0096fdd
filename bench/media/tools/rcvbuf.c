/* Copied unchanged from ../shared/bench/rtpengine/tools/rcvbuf.c (the rtpengine reference kit). */
/* LD_PRELOAD shim for the SIPp UAS of the media benchmark: every UDP socket it binds gets a
 * SO_RCVBUF of $RCVBUF_BYTES (default 4 MiB; the kernel caps it at net.core.rmem_max and doubles it).
 * Why: SIPp's -rtp_echo socket (one socket for all calls) keeps the system default receive buffer
 * (~208 KiB), and SIPp's rtp_stream senders fire all calls' packets in the same millisecond, so the
 * echo socket overflowed from ~400 calls on while rtpengine's own sockets dropped nothing.
 * This changes the harness only, not the relay under test.
 * Build: cc -O2 -shared -fPIC -o rcvbuf.so rcvbuf.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    int type = 0;
    socklen_t tl = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM) {
        const char *e = getenv("RCVBUF_BYTES");
        int sz = e ? atoi(e) : 4194304;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    return real_bind(fd, addr, len);
}
