/* Native spool writer of kairo_guard.ingest.spool_native: a writer thread that never
 * takes the interpreter lock. Written for kairo-guard.
 *
 * Writer(directory, segment_bytes, sync, error_class)
 *   starts a thread that takes every body submitted since its last pass, digests each
 *   (SHA-256), seals it when asked (HMAC-SHA256 over the seal's signed text, tag in
 *   base64url), frames it as a spool record (kairo_guard.store.spool: header, tenant,
 *   seal, meta, body; CRC-32 chained over the fields and the body), appends the whole
 *   pass with writev and makes it durable with one fdatasync (group commit). Only then
 *   are the pass's bodies done; the thread signals an eventfd.
 *
 *   submit(future, tenant, meta, body, head, rest, block)
 *       queues a body (any buffer: it is held, not copied, until done). head is None
 *       for a body spooled without a seal; else the seal is
 *       head + hex(digest) + rest + "." + tag, the tag the HMAC under the key whose
 *       64-byte block (key padded with zeros) is `block`.
 *   complete([budget_ns[, signalled]]) -> int
 *       (from the event loop, on the eventfd; signalled false: not woken by it, so it is
 *       not read) completes the futures of done bodies,
 *       oldest first: result (digest, seal), or exception error_class(reason). With a
 *       budget > 0 it stops once that many nanoseconds have passed (one body at least:
 *       completing a future can run its request's app) and leaves the rest `pending`.
 *       Returns how many; if completing a future raised (its loop is closed), raises the
 *       first such error once this call's other futures are completed.
 *   pending                      True while done bodies wait to be completed.
 *   fileno() -> int              the eventfd.
 *   queued_bytes                 body bytes submitted and not yet done.
 *   close()                      ends the thread once what is queued is done, then
 *                                completes every future.
 *
 * A failed write or sync fails every body of that pass and ends the segment (a torn
 * record ends it; the next pass opens a new one). A segment is
 * seg-<ns>-<pid>.kgs under a shared flock while this writer may append to it (made as
 * <name>.new and linked to its name once locked); its name is made durable (directory
 * fsync) before any record in it is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_CLMUL 1
#endif

#define HEADER 9
#define KIND_BODY 1
#define META_MAX 4096
#define TAG_LEN 43 /* base64url of 32 bytes, no padding */
#define IOVS 1024
#define REASON 200

static long long page_size = 4096; /* sysconf(_SC_PAGESIZE) once loaded */

typedef struct Job {
    struct Job *next;
    PyObject *future;
    Py_buffer body;
    unsigned char *frame; /* header + fields; the seal field is filled by the thread */
    size_t frame_len;
    size_t seal_at; /* offset of the seal's text in frame (0: no seal) */
    size_t head_len, rest_len;
    unsigned char *rest; /* points into frame: head and rest are stored in the seal field */
    unsigned char block[64];
    char digest[65];
    int failed;
    char reason[REASON];
} Job;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_t thread;
    int started, stopping, waiting;
    Job *queue, *queue_tail; /* submitted, not taken by the thread */
    Job *done, *done_tail;   /* done, futures not completed */
    Py_ssize_t queued_bytes;
    int efd;
    int fd;           /* the open segment, -1 if none */
    long long size;   /* bytes in it */
    long long dropped; /* its bytes before this offset were synced and left the page cache */
    long long segment_bytes;
    int sync;
    char *directory;
    PyObject *error_class;
    pid_t pid;
} Writer;

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url32(const unsigned char *in, char *out) {
    /* 32 bytes -> 43 characters (the last group of 2 bytes gives 3 characters) */
    int o = 0;
    for (int i = 0; i < 30; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
        out[o++] = B64URL[v & 63];
    }
    uint32_t v = ((uint32_t)in[30] << 16) | ((uint32_t)in[31] << 8);
    out[o++] = B64URL[(v >> 18) & 63];
    out[o++] = B64URL[(v >> 12) & 63];
    out[o++] = B64URL[(v >> 6) & 63];
}

static void put_u16(unsigned char *p, size_t v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)((v >> (8 * i)) & 0xff);
}

/* -- CRC-32 of the records: zlib's polynomial and convention, carry-less multiplication
   where the processor has it (PCLMULQDQ; a 64 KiB body's CRC took about a sixth of this
   thread's time through zlib). The algorithm folds the message 512 and then 128 bits at
   a time, each fold a multiplication by x^(n) mod P, and reduces the last 128 bits to 32
   by Barrett reduction (Intel, "Fast CRC Computation for Generic Polynomials Using
   PCLMULQDQ Instruction", 2009), in the bit-reflected order zlib's CRC uses. Each constant
   is reflect32(x^n mod P) << 1 for the n given, P = 0x104C11DB7; MU is reflect33 of
   floor(x^64 / P) and POLY reflect33 of P. zlib takes the tail under 16 bytes. */
#ifdef HAVE_CLMUL
#define K_FOLD4_LO 0x154442bd4ULL /* n = 4 * 128 + 32 */
#define K_FOLD4_HI 0x1c6e41596ULL /* n = 4 * 128 - 32 */
#define K_FOLD1_LO 0x1751997d0ULL /* n = 128 + 32 */
#define K_FOLD1_HI 0x0ccaa009eULL /* n = 128 - 32 */
#define K_64 0x163cd6124ULL       /* n = 64 */
#define POLY 0x1db710641ULL
#define MU 0x1f7011641ULL

__attribute__((target("pclmul,sse4.1"))) static inline __m128i
fold(__m128i acc, __m128i k, __m128i next) {
    __m128i lo = _mm_clmulepi64_si128(acc, k, 0x00), hi = _mm_clmulepi64_si128(acc, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

/* The CRC register (not inverted) after `len` bytes (a multiple of 16, at least 64)
   from register `reg`. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t
crc_fold(uint32_t reg, const unsigned char *p, size_t len) {
    const __m128i *v = (const __m128i *)p;
    __m128i x0 = _mm_loadu_si128(v), x1 = _mm_loadu_si128(v + 1);
    __m128i x2 = _mm_loadu_si128(v + 2), x3 = _mm_loadu_si128(v + 3);
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)reg));
    __m128i k = _mm_set_epi64x((long long)K_FOLD4_HI, (long long)K_FOLD4_LO);
    for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {
        v = (const __m128i *)p;
        x0 = fold(x0, k, _mm_loadu_si128(v));
        x1 = fold(x1, k, _mm_loadu_si128(v + 1));
        x2 = fold(x2, k, _mm_loadu_si128(v + 2));
        x3 = fold(x3, k, _mm_loadu_si128(v + 3));
    }
    k = _mm_set_epi64x((long long)K_FOLD1_HI, (long long)K_FOLD1_LO);
    x0 = fold(fold(fold(x0, k, x1), k, x2), k, x3);
    for (; len >= 16; p += 16, len -= 16)
        x0 = fold(x0, k, _mm_loadu_si128((const __m128i *)p));
    /* 128 bits to 64, 64 to 32 */
    __m128i low32 = _mm_set_epi32(0, -1, 0, -1);
    __m128i t = _mm_clmulepi64_si128(x0, k, 0x10);
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), t);
    t = _mm_srli_si128(x0, 4);
    x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), _mm_cvtsi64_si128((long long)K_64), 0x00);
    x0 = _mm_xor_si128(x0, t);
    /* Barrett reduction */
    __m128i pm = _mm_set_epi64x((long long)MU, (long long)POLY);
    t = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), pm, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), pm, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x0, t), 1);
}
#endif

#ifdef HAVE_CLMUL
static int clmul_usable; /* set once at import: the processor has PCLMULQDQ and SSE4.1 */
#endif

/* zlib's crc32(crc, p, len), for any length */
static uLong crc_update(uLong crc, const unsigned char *p, size_t len) {
#ifdef HAVE_CLMUL
    if (clmul_usable && len >= 64) {
        size_t whole = len & ~(size_t)15;
        crc = ~crc_fold(~(uint32_t)crc, p, whole) & 0xffffffffUL;
        p += whole;
        len -= whole;
    }
#endif
    while (len) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = crc32(crc, p, n);
        p += n;
        len -= n;
    }
    return crc;
}

/* Digest, seal and frame one job (no interpreter lock). */
static void prepare(Job *job) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, job->body.buf, (size_t)job->body.len);
    SHA256_Final(md, &ctx);
    for (int i = 0; i < 32; i++) {
        job->digest[2 * i] = hex[md[i] >> 4];
        job->digest[2 * i + 1] = hex[md[i] & 15];
    }
    job->digest[64] = 0;
    if (job->seal_at) {
        /* the seal field holds head, then 64 free bytes, then rest, ".", 43 free bytes:
           rest was stored right after head at submission; move it into place */
        unsigned char *s = job->frame + job->seal_at;
        memmove(s + job->head_len + 64, job->rest, job->rest_len);
        memcpy(s + job->head_len, job->digest, 64);
        size_t signed_len = job->head_len + 64 + job->rest_len;
        unsigned char pad[64], inner[32], tag[32];
        for (int i = 0; i < 64; i++) pad[i] = job->block[i] ^ 0x36;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, pad, 64);
        SHA256_Update(&ctx, s, signed_len);
        SHA256_Final(inner, &ctx);
        for (int i = 0; i < 64; i++) pad[i] = job->block[i] ^ 0x5c;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, pad, 64);
        SHA256_Update(&ctx, inner, 32);
        SHA256_Final(tag, &ctx);
        s[signed_len] = '.';
        b64url32(tag, (char *)s + signed_len + 1);
    }
    uLong crc = crc_update(0L, job->frame + HEADER, job->frame_len - HEADER);
    crc = crc_update(crc, job->body.buf, (size_t)job->body.len);
    put_u32(job->frame, (uint32_t)(job->frame_len - HEADER + (size_t)job->body.len));
    put_u32(job->frame + 4, (uint32_t)crc);
    job->frame[8] = KIND_BODY;
}

static void fail_all(Job *jobs, const char *what, int err) {
    for (Job *j = jobs; j; j = j->next) {
        j->failed = 1;
        snprintf(j->reason, REASON, "%s: %s", what, strerror(err));
    }
}

static void end_segment(Writer *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    w->size = 0;
}

/* Give the locked segment `made` (<path>.new) its name: link(), which never replaces a
   name, or, on a file system without hard links, rename() once no file has that name
   (none can: only the writer that made <path>.new, under O_EXCL, gives it). 0 or -1
   with errno set. */
/* 0: linked (<name>.new still to remove); 1: renamed (nothing left); -1: errno */
static int give_name(const char *made, const char *path) {
    if (link(made, path) == 0) return 0;
    if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS) return -1;
    struct stat st;
    if (lstat(path, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(made, path) == 0 ? 1 : -1;
}

static int open_segment(Writer *w) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    size_t n = strlen(w->directory) + 64;
    char *path = malloc(n);
    if (!path) return ENOMEM;
    char *made = malloc(n + 4);
    if (!made) {
        free(path);
        return ENOMEM;
    }
    snprintf(path, n, "%s/seg-%020lld-%d.kgs", w->directory, ns, (int)getpid());
    snprintf(made, n + 4, "%s.new", path);
    /* made as <name>.new and locked before it takes its name (link: never replaces
       one): the indexer removes a segment it finds unlocked once indexed, so one seen
       by its name before its lock is held would be removed with the body about to go
       to it (acknowledged, never indexed) */
    int e = 0, fd = open(made, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        e = errno; /* (EEXIST: another writer's, left alone) */
    } else {
        int named = flock(fd, LOCK_SH) == 0 ? give_name(made, path) : -1;
        if (named < 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
        if (named != 1) unlink(made);
    }
    free(made);
    free(path);
    if (fd < 0) return e;
    int dfd = open(w->directory, O_RDONLY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) { /* the new name itself must be durable */
        e = errno;
        if (dfd >= 0) close(dfd);
        close(fd);
        return e;
    }
    close(dfd);
    w->fd = fd;
    w->size = 0;
    w->dropped = 0;
    return 0;
}

/* Let the page cache drop what was just made durable (whole pages only: the last,
   partial one is still appended to). Nothing in the process reads it again; the indexer
   reads it back from the disk, off the request path. Without this the spool fills the
   page cache with pages written once and kept until memory runs short, and taking
   fresh pages made each write cost several times more (most of all in virtual
   machines, where a page first touched by the guest is first backed by the host). */
static void drop_synced(Writer *w) {
    long long upto = w->size - w->size % page_size;
    if (upto > w->dropped) {
        posix_fadvise(w->fd, (off_t)w->dropped, (off_t)(upto - w->dropped), POSIX_FADV_DONTNEED);
        w->dropped = upto;
    }
}

/* writev every buffer, however short the writes; 0 or errno */
static int write_all(int fd, struct iovec *iov, int count, long long *size) {
    while (count > 0) {
        int n = count > IOVS ? IOVS : count;
        ssize_t done = writev(fd, iov, n);
        if (done < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        *size += done;
        while (n > 0 && (size_t)done >= iov->iov_len) {
            done -= (ssize_t)iov->iov_len;
            iov++;
            n--;
            count--;
        }
        if (n > 0 && done > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= (size_t)done;
        }
    }
    return 0;
}

static void write_pass(Writer *w, Job *jobs) {
    int count = 0;
    for (Job *j = jobs; j; j = j->next) {
        prepare(j);
        count += 2;
    }
    struct iovec *iov = malloc(sizeof(struct iovec) * (size_t)count);
    if (!iov) {
        fail_all(jobs, "cannot write the spool", ENOMEM);
        return;
    }
    int i = 0;
    for (Job *j = jobs; j; j = j->next) {
        iov[i].iov_base = j->frame;
        iov[i++].iov_len = j->frame_len;
        iov[i].iov_base = j->body.buf;
        iov[i++].iov_len = (size_t)j->body.len;
    }
    int err = 0;
    if (w->fd < 0 || w->size >= w->segment_bytes) {
        end_segment(w); /* a full segment was synced with its last pass */
        err = open_segment(w);
    }
    if (!err) err = write_all(w->fd, iov, count, &w->size);
    free(iov);
    if (err) {
        fail_all(jobs, "cannot write the spool", err);
        end_segment(w);
        return;
    }
    if (w->sync) {
        while (fdatasync(w->fd) != 0) {
            if (errno == EINTR) continue;
            fail_all(jobs, "cannot sync the spool", errno);
            end_segment(w); /* what went to it is never reported durable */
            return;
        }
        drop_synced(w);
    }
}

static void *run(void *arg) {
    Writer *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mutex);
        while (!w->queue && !w->stopping) {
            w->waiting = 1;
            pthread_cond_wait(&w->wake, &w->mutex);
            w->waiting = 0;
        }
        Job *jobs = w->queue;
        w->queue = w->queue_tail = NULL;
        int stop = w->stopping && !jobs;
        pthread_mutex_unlock(&w->mutex);
        if (stop) break;
        write_pass(w, jobs);
        Py_ssize_t bytes = 0;
        Job *last = jobs;
        for (Job *j = jobs; j; j = j->next) {
            bytes += j->body.len;
            last = j;
        }
        pthread_mutex_lock(&w->mutex);
        if (w->done_tail) w->done_tail->next = jobs;
        else w->done = jobs;
        w->done_tail = last;
        w->queued_bytes -= bytes;
        pthread_mutex_unlock(&w->mutex);
        uint64_t one = 1;
        ssize_t r;
        do r = write(w->efd, &one, sizeof one);
        while (r < 0 && errno == EINTR);
    }
    end_segment(w);
    return NULL;
}

static void free_job(Job *j) {
    PyBuffer_Release(&j->body);
    Py_XDECREF(j->future);
    free(j->frame);
    free(j);
}

static int Writer_init(Writer *w, PyObject *args, PyObject *kw) {
    static char *names[] = {"directory", "segment_bytes", "sync", "error_class", NULL};
    const char *directory;
    long long segment_bytes;
    int sync;
    PyObject *error_class;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sLpO", names, &directory, &segment_bytes,
                                     &sync, &error_class))
        return -1;
    if (w->started) {
        PyErr_SetString(PyExc_RuntimeError, "the writer is already running");
        return -1;
    }
    w->directory = strdup(directory);
    if (!w->directory) {
        PyErr_NoMemory();
        return -1;
    }
    w->segment_bytes = segment_bytes;
    w->sync = sync;
    Py_INCREF(error_class);
    w->error_class = error_class;
    w->fd = -1;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->wake, NULL);
    w->pid = getpid();
    int err = pthread_create(&w->thread, NULL, run, w);
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    w->started = 1;
    return 0;
}

/* bytes argument i of submit(), or NULL with TypeError */
static const char *bytes_arg(PyObject *const *args, int i, Py_ssize_t *len) {
    if (!PyBytes_Check(args[i])) {
        PyErr_Format(PyExc_TypeError, "submit() argument %d must be bytes, not %.80s", i + 1,
                     Py_TYPE(args[i])->tp_name);
        return NULL;
    }
    *len = PyBytes_GET_SIZE(args[i]);
    return PyBytes_AS_STRING(args[i]);
}

static PyObject *Writer_submit(Writer *w, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "submit() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *future = args[0], *head_obj = args[4];
    const char *tenant, *meta, *rest, *block;
    Py_ssize_t tenant_len, meta_len, rest_len, block_len;
    Py_buffer body;
    if (!(tenant = bytes_arg(args, 1, &tenant_len)) || !(meta = bytes_arg(args, 2, &meta_len)) ||
        !(rest = bytes_arg(args, 5, &rest_len)) || !(block = bytes_arg(args, 6, &block_len)) ||
        PyObject_GetBuffer(args[3], &body, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *head = NULL;
    Py_ssize_t head_len = 0;
    if (head_obj != Py_None) {
        if (!PyBytes_Check(head_obj)) {
            PyBuffer_Release(&body);
            PyErr_SetString(PyExc_TypeError, "head must be bytes or None");
            return NULL;
        }
        head = PyBytes_AS_STRING(head_obj);
        head_len = PyBytes_GET_SIZE(head_obj);
        if (block_len != 64) {
            PyBuffer_Release(&body);
            PyErr_SetString(PyExc_ValueError, "the key block must be 64 bytes");
            return NULL;
        }
    }
    if (meta_len > META_MAX) meta_len = META_MAX;
    Py_ssize_t seal_len = head ? head_len + 64 + rest_len + 1 + TAG_LEN : 0;
    Py_ssize_t fields = 2 + tenant_len + 2 + seal_len + 2 + meta_len;
    if (tenant_len > 0xffff || seal_len > 0xffff ||
        (unsigned long long)fields + (unsigned long long)body.len > 0xffffffffULL) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_ValueError, "the record is too large for the spool");
        return NULL;
    }
    if (!w->started || w->stopping) {
        PyBuffer_Release(&body);
        PyErr_SetString(w->error_class ? w->error_class : PyExc_RuntimeError,
                        "the spool writer is closed");
        return NULL;
    }
    Job *job = calloc(1, sizeof(Job));
    unsigned char *frame = job ? malloc((size_t)(HEADER + fields)) : NULL;
    if (!frame) {
        free(job);
        PyBuffer_Release(&body);
        return PyErr_NoMemory();
    }
    job->body = body;
    job->frame = frame;
    job->frame_len = (size_t)(HEADER + fields);
    unsigned char *p = frame + HEADER;
    put_u16(p, (size_t)tenant_len);
    memcpy(p + 2, tenant, (size_t)tenant_len);
    p += 2 + tenant_len;
    put_u16(p, (size_t)seal_len);
    p += 2;
    if (head) {
        job->seal_at = (size_t)(p - frame);
        job->head_len = (size_t)head_len;
        job->rest_len = (size_t)rest_len;
        memcpy(p, head, (size_t)head_len);
        job->rest = p + head_len;
        memcpy(job->rest, rest, (size_t)rest_len); /* moved past the digest later */
        memcpy(job->block, block, 64);
    }
    p += seal_len;
    put_u16(p, (size_t)meta_len);
    memcpy(p + 2, meta, (size_t)meta_len);
    Py_INCREF(future);
    job->future = future;
    pthread_mutex_lock(&w->mutex);
    if (w->queue_tail) w->queue_tail->next = job;
    else w->queue = job;
    w->queue_tail = job;
    w->queued_bytes += body.len;
    int wake = w->waiting;
    pthread_mutex_unlock(&w->mutex);
    if (wake) pthread_cond_signal(&w->wake);
    Py_RETURN_NONE;
}

static PyObject *s_done, *s_set_result, *s_set_exception;

static int finish(Writer *w, Job *j) {
    PyObject *done = PyObject_CallMethodNoArgs(j->future, s_done);
    if (!done) return -1;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done) return 0; /* cancelled: its request is gone */
    PyObject *r;
    if (j->failed) {
        PyObject *exc = PyObject_CallFunction(w->error_class, "s", j->reason);
        if (!exc) return -1;
        r = PyObject_CallMethodOneArg(j->future, s_set_exception, exc);
        Py_DECREF(exc);
    } else {
        PyObject *seal = j->seal_at
            ? PyUnicode_FromStringAndSize((const char *)j->frame + j->seal_at,
                                          (Py_ssize_t)(j->head_len + 64 + j->rest_len + 1 + TAG_LEN))
            : PyUnicode_FromStringAndSize("", 0);
        if (!seal) return -1;
        PyObject *result = Py_BuildValue("(s#N)", j->digest, (Py_ssize_t)64, seal);
        if (!result) return -1;
        r = PyObject_CallMethodOneArg(j->future, s_set_result, result);
        Py_DECREF(result);
    }
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static long long monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Completes done bodies, oldest first; with a budget > 0, stops once that many
   nanoseconds have passed (after one body at least) and leaves the rest done. */
static PyObject *complete_done(Writer *w, long long budget, int signalled) {
    uint64_t count;
    while (signalled && read(w->efd, &count, sizeof count) < 0 && errno == EINTR) {
    }
    long long until = budget > 0 ? monotonic_ns() + budget : 0;
    pthread_mutex_lock(&w->mutex);
    Job *jobs = w->done;
    w->done = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mutex);
    long n = 0;
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    while (jobs) {
        Job *next = jobs->next;
        jobs->next = NULL;
        if (finish(w, jobs) < 0) { /* every other future is still completed */
            if (type) PyErr_Clear();
            else PyErr_Fetch(&type, &value, &tb);
        }
        free_job(jobs);
        jobs = next;
        n++;
        if (jobs && until && monotonic_ns() >= until) { /* the rest before later passes' */
            Job *last = jobs;
            while (last->next) last = last->next;
            pthread_mutex_lock(&w->mutex);
            last->next = w->done;
            if (!w->done) w->done_tail = last;
            w->done = jobs;
            pthread_mutex_unlock(&w->mutex);
            break;
        }
    }
    if (type) { /* the first error, once this call's bodies are completed and released */
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    return PyLong_FromLong(n);
}

static PyObject *Writer_complete(Writer *w, PyObject *const *args, Py_ssize_t nargs) {
    long long budget = 0;
    int signalled = 1;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "complete() takes at most two arguments");
        return NULL;
    }
    if (nargs >= 1) {
        budget = PyLong_AsLongLong(args[0]);
        if (budget == -1 && PyErr_Occurred()) return NULL;
    }
    if (nargs == 2 && (signalled = PyObject_IsTrue(args[1])) < 0) return NULL;
    return complete_done(w, budget, signalled);
}

static PyObject *Writer_get_pending(Writer *w, void *Py_UNUSED(closure)) {
    pthread_mutex_lock(&w->mutex);
    int pending = w->done != NULL;
    pthread_mutex_unlock(&w->mutex);
    return PyBool_FromLong(pending);
}

static PyObject *Writer_fileno(Writer *w, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLong(w->efd);
}

static void stop_thread(Writer *w) {
    if (!w->started || w->pid != getpid()) return; /* in a forked child there is none */
    pthread_mutex_lock(&w->mutex);
    w->stopping = 1;
    pthread_mutex_unlock(&w->mutex);
    pthread_cond_signal(&w->wake);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(w->thread, NULL);
    Py_END_ALLOW_THREADS
    w->started = 0;
}

static PyObject *Writer_close(Writer *w, PyObject *Py_UNUSED(ignored)) {
    stop_thread(w);
    if (w->pid == getpid()) return complete_done(w, 0, 1);
    Py_RETURN_NONE;
}

static PyObject *Writer_queued(Writer *w, void *Py_UNUSED(closure)) {
    pthread_mutex_lock(&w->mutex);
    Py_ssize_t n = w->queued_bytes;
    pthread_mutex_unlock(&w->mutex);
    return PyLong_FromSsize_t(n);
}

static void Writer_dealloc(Writer *w) {
    if (w->pid == getpid()) {
        stop_thread(w);
        Job *lists[2] = {w->queue, w->done};
        for (int i = 0; i < 2; i++) {
            for (Job *j = lists[i]; j;) {
                Job *next = j->next;
                free_job(j);
                j = next;
            }
        }
        if (w->pid) {
            pthread_mutex_destroy(&w->mutex);
            pthread_cond_destroy(&w->wake);
        }
    } /* a forked child's copy: its jobs belong to the parent; leaked, never freed twice */
    if (w->efd > 0) close(w->efd); /* the segment is the thread's: it closed it */
    free(w->directory);
    Py_XDECREF(w->error_class);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyMethodDef Writer_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))Writer_submit, METH_FASTCALL,
     "submit(future, tenant, meta, body, head, rest, block): queue a body."},
    {"complete", (PyCFunction)(void (*)(void))Writer_complete, METH_FASTCALL,
     "complete([budget_ns[, signalled]]): complete done bodies' futures (with a budget,"
     " those of about that many nanoseconds; the rest stay pending); returns how many."},
    {"fileno", (PyCFunction)Writer_fileno, METH_NOARGS, "The eventfd signalled per pass."},
    {"close", (PyCFunction)Writer_close, METH_NOARGS,
     "End the thread once the queue is written; complete every future."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Writer_getset[] = {
    {"queued_bytes", (getter)Writer_queued, NULL, "Body bytes submitted and not done.", NULL},
    {"pending", (getter)Writer_get_pending, NULL, "Done bodies whose futures are not completed.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kairo_guard.ingest._spoolw.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The spool's writer thread (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
    .tp_getset = Writer_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_spoolw", "Native spool writer of kairo_guard.ingest.", -1, NULL,
};

PyMODINIT_FUNC PyInit__spoolw(void) {
    if (PyType_Ready(&WriterType) < 0) return NULL;
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0) page_size = page;
#ifdef HAVE_CLMUL
    clmul_usable = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    s_done = PyUnicode_InternFromString("done");
    s_set_result = PyUnicode_InternFromString("set_result");
    s_set_exception = PyUnicode_InternFromString("set_exception");
    if (!s_done || !s_set_result || !s_set_exception) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(&WriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
