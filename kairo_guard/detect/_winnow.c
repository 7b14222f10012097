/* Native core of kairo_guard.detect.winnow: the same fingerprint scheme as the
 * pure-Python reference there (which is the specification and the test oracle).
 * Written for kairo-guard from the published descriptions of the algorithms.
 *
 * Functions over a Tables capsule made once from the maps Python computes:
 *
 *   prepare(tables, text) -> str
 *       drops invisible characters and replaces characters by their NFKC form (both
 *       per code point; the replacement leaves NFKC of the whole text unchanged, it only
 *       lets CPython's NFKC quick check pass), returning `text` itself when nothing
 *       changes.
 *   fingerprints(tables, nfkc_text, key16) -> bytes
 *       from NFKC-normalized text: case folded, diacritics stripped and look-alikes
 *       mapped to their representative (one map), characters that are not
 *       alphanumeric (str.isalnum) dropped; k-grams of K code points
 *       hashed with a polynomial rolling hash mixed by a 64-bit finalizer; the rightmost
 *       minimum of every window of W hashes selected (blocked minima, O(n)); each
 *       selected k-gram's UTF-8 hashed with SipHash-2-4 under the 128-bit key. Returns
 *       the distinct 64-bit results, sorted as signed integers, as native int64 bytes.
 *   normalized(tables, nfkc_text) -> str
 *       the text whose k-grams fingerprints() hashes (for tests and diagnostics).
 *   siphash24(key16, message) -> int
 *
 * The GIL is released while the pure-C part runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define K 42
#define W 30
#define VERSION 2 /* of what this computes: winnow.py refuses a core of another */
#define RING 64 /* power of two >= W: the deque never holds more than W entries */
#define BASE 0x100000001B3ULL
#define CAPSULE "kairo_guard.detect._winnow.Tables"

/* A map from code points to strings of code points: keys sorted ascending, the value of
 * keys[i] is vals[offs[i]:offs[i + 1]] (possibly empty). Code points below 0x10000 are
 * found through a direct index (0: not in the map, else 1 + i); others by binary search
 * from `astral` (the first key >= 0x10000). */
typedef struct {
    uint32_t *keys, *offs, *vals;
    uint16_t *bmp;
    Py_ssize_t n, astral;
    uint32_t maxrep;
} CharMap;

/* fold_direct[c] for c < 0x10000: the one code point c folds to, with FOLD_ALNUM when
 * that is alphanumeric; FOLD_MAP when c folds to another number of code points (the
 * map has them). */
#define FOLD_ALNUM 0x80000000u
#define FOLD_MAP 0x40000000u
#define FOLD_CHAR 0x001FFFFFu

typedef struct {
    CharMap fold;    /* look-alike -> representative (and ASCII capitals -> their fold) */
    CharMap prepare; /* invisible -> "", character -> its NFKC form */
    uint8_t alnum[0x10000 / 8];
    uint8_t ascii_alnum[128];
    uint32_t *fold_direct; /* 0x10000 entries (see FOLD_ALNUM) */
    uint64_t base_inv, base_top; /* BASE**-1 and BASE**(K-1) modulo 2**64 */
} Tables;

/* -- character maps -------------------------------------------------------------- */

static void
charmap_free(CharMap *m)
{
    PyMem_RawFree(m->keys);
    PyMem_RawFree(m->offs);
    PyMem_RawFree(m->vals);
    PyMem_RawFree(m->bmp);
    memset(m, 0, sizeof(*m));
}

static uint32_t *
copy_u32(Py_buffer *b, Py_ssize_t *count)
{
    uint32_t *out;
    if (b->len % 4) {
        PyErr_SetString(PyExc_ValueError, "table arrays are uint32");
        return NULL;
    }
    *count = b->len / 4;
    out = PyMem_RawMalloc(b->len ? (size_t)b->len : 4);
    if (!out) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, b->buf, (size_t)b->len);
    return out;
}

static int
charmap_init(CharMap *m, Py_buffer *keys, Py_buffer *offs, Py_buffer *vals)
{
    Py_ssize_t nk, no, nv, i;
    memset(m, 0, sizeof(*m));
    m->keys = copy_u32(keys, &nk);
    m->offs = m->keys ? copy_u32(offs, &no) : NULL;
    m->vals = m->offs ? copy_u32(vals, &nv) : NULL;
    m->bmp = m->vals ? PyMem_RawCalloc(0x10000, sizeof(uint16_t)) : NULL;
    if (!m->bmp) {
        if (m->vals)
            PyErr_NoMemory();
        charmap_free(m);
        return -1;
    }
    m->n = nk;
    if (no != nk + 1 || m->offs[0] != 0 || m->offs[nk] != (uint32_t)nv || nk >= 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "inconsistent character map");
        charmap_free(m);
        return -1;
    }
    m->astral = nk;
    for (i = 0; i < nk; i++) {
        uint32_t len = m->offs[i + 1] - m->offs[i];
        if ((i && m->keys[i] <= m->keys[i - 1]) || m->offs[i + 1] < m->offs[i] ||
            m->keys[i] > 0x10FFFF) {
            PyErr_SetString(PyExc_ValueError, "character map keys must ascend");
            charmap_free(m);
            return -1;
        }
        if (len > m->maxrep)
            m->maxrep = len;
        if (m->keys[i] < 0x10000)
            m->bmp[m->keys[i]] = (uint16_t)(i + 1);
        else if (m->astral == nk)
            m->astral = i;
    }
    for (i = 0; i < nv; i++) {
        if (m->vals[i] > 0x10FFFF) {
            PyErr_SetString(PyExc_ValueError, "character map value out of range");
            charmap_free(m);
            return -1;
        }
    }
    return 0;
}

/* The value of `c` (and its length in *len), or NULL when `c` is not in the map. */
static inline const uint32_t *
charmap_get(const CharMap *m, uint32_t c, uint32_t *len)
{
    Py_ssize_t i;
    if (c < 0x10000) {
        uint16_t j = m->bmp[c];
        if (!j)
            return NULL;
        i = j - 1;
    }
    else {
        Py_ssize_t lo = m->astral, hi = m->n;
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            if (m->keys[mid] < c)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == m->n || m->keys[lo] != c)
            return NULL;
        i = lo;
    }
    *len = m->offs[i + 1] - m->offs[i];
    return m->vals + m->offs[i];
}

static inline int
is_alnum(const Tables *t, uint32_t c)
{
    if (c < 128)
        return t->ascii_alnum[c];
    if (c < 0x10000)
        return (t->alnum[c >> 3] >> (c & 7)) & 1;
    return Py_UNICODE_ISALNUM((Py_UCS4)c);
}

/* -- SipHash-2-4 (Aumasson and Bernstein, 2012) ---------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                        \
    do {                                                                                \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                       \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                          \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                          \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                       \
    } while (0)
#define SIP_C0 0x736f6d6570736575ULL
#define SIP_C1 0x646f72616e646f6dULL
#define SIP_C2 0x6c7967656e657261ULL
#define SIP_C3 0x7465646279746573ULL

static inline uint64_t
load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* SipHash-2-4 of in[0:len] from the state after its first `done` bytes (a multiple of
 * 8) were compressed. */
static uint64_t
siphash24_finish(uint64_t v0, uint64_t v1, uint64_t v2, uint64_t v3, const uint8_t *in,
                 size_t len, size_t done)
{
    uint64_t m, b = (uint64_t)len << 56;
    size_t i, full = len & ~(size_t)7;
    for (i = done; i < full; i += 8) {
        m = load_le64(in + i);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    for (i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t
siphash24(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    return siphash24_finish(k0 ^ SIP_C0, k1 ^ SIP_C1, k0 ^ SIP_C2, k1 ^ SIP_C3, in, len, 0);
}

/* SipHash-2-4 of LANES messages at once: the 8-byte blocks all of them have are
 * compressed in lockstep (independent chains the processor overlaps, or the compiler
 * vectorizes), the rest of each message on its own. */
#define LANES 4

static void
siphash24_lanes(uint64_t k0, uint64_t k1, const uint8_t *const *in, const size_t *len,
                uint64_t *out)
{
    uint64_t v0[LANES], v1[LANES], v2[LANES], v3[LANES], m[LANES];
    size_t common = len[0], off;
    int i;
    for (i = 1; i < LANES; i++)
        common = len[i] < common ? len[i] : common;
    common &= ~(size_t)7;
    for (i = 0; i < LANES; i++) {
        v0[i] = k0 ^ SIP_C0;
        v1[i] = k1 ^ SIP_C1;
        v2[i] = k0 ^ SIP_C2;
        v3[i] = k1 ^ SIP_C3;
    }
    for (off = 0; off < common; off += 8) {
        for (i = 0; i < LANES; i++) {
            m[i] = load_le64(in[i] + off);
            v3[i] ^= m[i];
        }
        for (i = 0; i < LANES; i++) {
            SIPROUND(v0[i], v1[i], v2[i], v3[i]);
            SIPROUND(v0[i], v1[i], v2[i], v3[i]);
        }
        for (i = 0; i < LANES; i++)
            v0[i] ^= m[i];
    }
    for (i = 0; i < LANES; i++)
        out[i] = siphash24_finish(v0[i], v1[i], v2[i], v3[i], in[i], len[i], common);
}

/* -- normalization --------------------------------------------------------------- */

/* A growable array of code points. */
typedef struct {
    uint32_t *items;
    size_t len, cap;
} Buf;

static int
buf_grow(Buf *b, size_t extra)
{
    size_t cap = b->cap + b->cap / 2 + extra + 64;
    uint32_t *items;
    if (cap > PY_SSIZE_T_MAX / sizeof(uint32_t))
        return -1;
    items = PyMem_RawRealloc(b->items, cap * sizeof(uint32_t));
    if (!items)
        return -1;
    b->items = items;
    b->cap = cap;
    return 0;
}

/* Append code point d at items[len] if it is alphanumeric; drop it if not (whitespace,
 * punctuation, symbols, marks). Branch-free: letters and separators alternate
 * unpredictably. Room for 1 is there. */
#define EMIT(items, len, d, alnum)                                                      \
    do {                                                                                \
        (items)[len] = (d);                                                             \
        (len) += (size_t)(alnum);                                                       \
    } while (0)

/* Fold case, strip diacritics and map look-alikes (one map: casefold, then the base
 * letter and the representative of each character), keep only alphanumeric
 * characters: n code points of one kind from `in`, appended to `out`. A character of the
 * BMP that folds to one code point (nearly all) takes one look in fold_direct; the
 * others go through the map. The buffer's fields are kept in locals (stores to its
 * items could alias them) and written back when it grows and at the end. */
#define DEFINE_FOLD(NAME, TYPE)                                                         \
    static int NAME(const Tables *t, const TYPE *in, Py_ssize_t n, Buf *out)            \
    {                                                                                   \
        Py_ssize_t i;                                                                   \
        size_t need = 2 * (size_t)t->fold.maxrep + 2, len = out->len, cap = out->cap;   \
        const uint32_t *direct = t->fold_direct;                                        \
        uint32_t *items = out->items;                                                   \
        for (i = 0; i < n; i++) {                                                       \
            uint32_t c = in[i], e, count = 1, j;                                        \
            const uint32_t *rep;                                                        \
            if (len + need > cap) {                                                     \
                out->len = len;                                                         \
                if (buf_grow(out, need) < 0)                                            \
                    return -1;                                                          \
                items = out->items;                                                     \
                cap = out->cap;                                                         \
            }                                                                           \
            e = c < 0x10000 ? direct[c] : FOLD_MAP;                                     \
            if (!(e & FOLD_MAP)) {                                                      \
                EMIT(items, len, e & FOLD_CHAR, (int)(e >> 31));               \
                continue;                                                               \
            }                                                                           \
            rep = charmap_get(&t->fold, c, &count);                                     \
            if (!rep) {                                                                 \
                rep = &c;                                                               \
                count = 1;                                                              \
            }                                                                           \
            for (j = 0; j < count; j++) {                                               \
                uint32_t d = rep[j];                                                    \
                int alnum = is_alnum(t, d);                                             \
                EMIT(items, len, d, alnum);                                    \
            }                                                                           \
        }                                                                               \
        out->len = len;                                                                 \
        return 0;                                                                       \
    }

DEFINE_FOLD(fold_ucs1, Py_UCS1)
DEFINE_FOLD(fold_ucs2, Py_UCS2)
DEFINE_FOLD(fold_ucs4, Py_UCS4)

/* -- winnowing ------------------------------------------------------------------- */

typedef struct {
    int64_t *items;
    Py_ssize_t len, cap;
} Results;

static int
results_push(Results *r, int64_t v)
{
    if (r->len == r->cap) {
        Py_ssize_t cap = r->cap ? 2 * r->cap : 64;
        int64_t *items = PyMem_RawRealloc(r->items, (size_t)cap * sizeof(int64_t));
        if (!items)
            return -1;
        r->items = items;
        r->cap = cap;
    }
    r->items[r->len++] = v;
    return 0;
}

static inline uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static size_t
utf8(const uint32_t *s, Py_ssize_t n, uint8_t *out)
{
    size_t len = 0;
    Py_ssize_t i;
    uint32_t any = 0;
    for (i = 0; i < n; i++)
        any |= s[i];
    if (any < 0x80) { /* ASCII: one byte each (a loop the compiler vectorizes) */
        for (i = 0; i < n; i++)
            out[i] = (uint8_t)s[i];
        return (size_t)n;
    }
    for (i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) {
            out[len++] = (uint8_t)c;
        }
        else if (c < 0x800) {
            out[len++] = (uint8_t)(0xC0 | c >> 6);
            out[len++] = (uint8_t)(0x80 | (c & 0x3F));
        }
        else if (c < 0x10000) {
            out[len++] = (uint8_t)(0xE0 | c >> 12);
            out[len++] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
            out[len++] = (uint8_t)(0x80 | (c & 0x3F));
        }
        else {
            out[len++] = (uint8_t)(0xF0 | c >> 18);
            out[len++] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
            out[len++] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
            out[len++] = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    return len;
}

/* Where the UTF-8 of the k-gram at a position lies in the UTF-8 of the whole text
 * (encoded once: a k-gram is hashed from there, not encoded again). Selected positions
 * never decrease (each window's rightmost minimum), so the cursor only moves forward:
 * `at` is a position, `byte` where its code point starts, `span` the k-gram's length
 * in bytes. For ASCII text (`ascii`) a position is its own offset. */
typedef struct {
    const uint32_t *s;
    const uint8_t *bytes;
    int ascii;
    Py_ssize_t at;
    size_t byte, span;
} Cursor;

static inline size_t
utf8_length(uint32_t c)
{
    return 1 + (c >= 0x80) + (c >= 0x800) + (c >= 0x10000);
}

static void
cursor_start(Cursor *c, Py_ssize_t p)
{
    Py_ssize_t i;
    c->at = p;
    c->byte = c->span = 0;
    for (i = 0; i < p; i++)
        c->byte += utf8_length(c->s[i]);
    for (i = p; i < p + K; i++)
        c->span += utf8_length(c->s[i]);
}

/* The k-gram at p (p + K <= the text's length) of a text that is not ASCII: its UTF-8
 * and the length of that. */
static inline const uint8_t *
cursor_kgram(Cursor *c, Py_ssize_t p, size_t *len)
{
    if (p < c->at) /* (not reached: selections never go back) */
        cursor_start(c, p);
    for (; c->at < p; c->at++) {
        size_t first = utf8_length(c->s[c->at]);
        c->byte += first;
        c->span += utf8_length(c->s[c->at + K]) - first;
    }
    *len = c->span;
    return c->bytes + c->byte;
}

/* Selected k-grams waiting to be hashed, LANES at a time: those of ASCII text copied
 * to `ascii` (one byte a code point, a loop the compiler vectorizes), the others where
 * the cursor finds them. */
typedef struct {
    Cursor *at;
    uint64_t k0, k1;
    Results *r;
    const uint8_t *in[LANES];
    size_t len[LANES];
    uint8_t ascii[LANES][K];
    int n;
} Selection;

static int
selection_flush(Selection *sel)
{
    uint64_t out[LANES];
    int i;
    if (sel->n == LANES)
        siphash24_lanes(sel->k0, sel->k1, sel->in, sel->len, out);
    else
        for (i = 0; i < sel->n; i++)
            out[i] = siphash24(sel->k0, sel->k1, sel->in[i], sel->len[i]);
    for (i = 0; i < sel->n; i++)
        if (results_push(sel->r, (int64_t)out[i]) < 0)
            return -1;
    sel->n = 0;
    return 0;
}

static inline int
select_kgram(Selection *sel, Py_ssize_t p)
{
    Cursor *at = sel->at;
    int i, n = sel->n;
    if (at->ascii) {
        const uint32_t *from = at->s + p;
        for (i = 0; i < K; i++)
            sel->ascii[n][i] = (uint8_t)from[i];
        sel->in[n] = sel->ascii[n];
        sel->len[n] = K;
    }
    else
        sel->in[n] = cursor_kgram(at, p, &sel->len[n]);
    sel->n = n + 1;
    return sel->n == LANES ? selection_flush(sel) : 0;
}

/* The k-gram hashes of s, W at a time: polynomial rolling hash, then mix64. */
typedef struct {
    const uint32_t *s;
    uint64_t h, inv, top;
    Py_ssize_t next, count;
} Hashes;

static Py_ssize_t
hashes_take(Hashes *g, uint64_t *out)
{
    /* locals: stores to out[] could alias the state */
    const uint32_t *s = g->s;
    uint64_t h = g->h, inv = g->inv, top = g->top;
    Py_ssize_t j, i = g->next, m = g->count - i < W ? g->count - i : W;
    Py_ssize_t last = g->count - 1; /* the hash of the last k-gram rolls no further */
    for (j = 0; j < m; j++, i++) {
        out[j] = mix64(h);
        if (i < last)
            h = (h - s[i]) * inv + (uint64_t)s[i + K] * top;
    }
    g->h = h;
    g->next = i;
    return m;
}

/* Select the rightmost minimum of every window of W k-gram hashes of s[0:n] (n >= K;
 * all of them when there are fewer than W), dropping a position selected by the window
 * before, and hash each selected k-gram. Windows are cut at multiples of W (van Herk;
 * Gil and Werman): the minimum of the window starting at i is that of the suffix of its
 * block from i and of the prefix of the next block to i + W - 1. Branch-free minima,
 * O(n) whatever the hashes, O(W) memory. */
static int
winnow_at(const Tables *t, const uint32_t *s, Py_ssize_t n, Cursor *at, uint64_t k0,
          uint64_t k1, Results *r)
{
    Hashes g = {s, 0, t->base_inv, t->base_top, 0, n - K + 1};
    Selection sel = {at, k0, k1, r, {NULL}, {0}, {{0}}, 0};
    uint64_t cur[W], nxt[W], sufv[W], prev[W], power = 1, bv, lastv = 0;
    Py_ssize_t suf[W], pre[W], m, j, best, base = 0, last = -1, i;
    /* s[run_from:run_end] is one character repeated, run_from <= last: a k-gram inside
       it equals the last one selected without comparing them (a long run of one
       character selects every position: see below) */
    Py_ssize_t run_from = 0, run_end = 0;
    for (i = 0; i < K; i++) {
        g.h += (uint64_t)s[i] * power;
        power *= BASE;
    }
    m = hashes_take(&g, cur);
    if (m < W) { /* one window shorter than W */
        for (best = 0, bv = cur[0], j = 1; j < m; j++) {
            int take = cur[j] <= bv;
            best = take ? j : best;
            bv = take ? cur[j] : bv;
        }
        return select_kgram(&sel, best) < 0 ? -1 : selection_flush(&sel);
    }
    for (;;) { /* cur: the full block at base; its windows need the next block */
        for (best = W - 1, bv = cur[W - 1], j = W - 1; j >= 0; j--) {
            int take = cur[j] < bv; /* strictly: the rightmost of equals stays */
            best = take ? j : best;
            bv = take ? cur[j] : bv;
            suf[j] = best;
            sufv[j] = bv;
        }
        m = hashes_take(&g, nxt);
        for (best = 0, bv = m ? nxt[0] : 0, j = 0; j < m; j++) {
            int take = nxt[j] <= bv;
            best = take ? j : best;
            bv = take ? nxt[j] : bv;
            pre[j] = best;
            prev[j] = bv;
        }
        /* windows starting at base + j for j <= m, the last ending at base + W + m - 1 */
        for (j = 0; j <= m && j < W; j++) {
            Py_ssize_t p = base + suf[j];
            uint64_t v = sufv[j];
            if (j > 0 && prev[j - 1] <= sufv[j]) {
                p = base + W + pre[j - 1];
                v = prev[j - 1];
            }
            if (p != last) {
                /* the same k-gram as the one selected last (a run of one character, a
                   short repeated pattern) has its fingerprint already: not hashed again */
                int same = 0;
                if (last >= 0 && v == lastv) {
                    if (run_end <= last) { /* (else last is inside the run) */
                        run_from = last;   /* a run from the last selected k-gram */
                        run_end = last + 1;
                    }
                    while (run_end < p + K && s[run_end] == s[run_from]) /* p + K <= n */
                        run_end++;
                    same = run_end >= p + K || !memcmp(s + p, s + last, K * sizeof *s);
                }
                last = p;
                lastv = v;
                if (!same && select_kgram(&sel, p) < 0)
                    return -1;
            }
        }
        if (m < W)
            return selection_flush(&sel);
        memcpy(cur, nxt, sizeof(cur));
        base += W;
    }
}

/* winnow_at over s; text that is not ASCII is encoded to UTF-8 once (at most 4 bytes a
 * code point), each selected k-gram hashed where it lies in that. */
static int
winnow(const Tables *t, const uint32_t *s, Py_ssize_t n, uint64_t k0, uint64_t k1,
       Results *r)
{
    Cursor at = {s, NULL, 1, 0, 0, 0};
    uint8_t *bytes = NULL;
    uint32_t any = 0;
    Py_ssize_t i;
    int result;
    for (i = 0; i < n; i++)
        any |= s[i];
    if (any >= 0x80) {
        if ((size_t)n > (size_t)PY_SSIZE_T_MAX / 4 || !(bytes = PyMem_RawMalloc(4 * (size_t)n)))
            return -1;
        utf8(s, n, bytes);
        at.bytes = bytes;
        at.ascii = 0;
        cursor_start(&at, 0);
    }
    result = winnow_at(t, s, n, &at, k0, k1, r);
    PyMem_RawFree(bytes);
    return result;
}

/* Sort v[0:n] as signed integers (LSD radix sort, a byte a pass, a pass skipped
 * where every key has the same byte; insertion sort when short) and drop repeats;
 * return how many are left, or -1 when out of memory. */
static Py_ssize_t
sort_unique(int64_t *v, Py_ssize_t n)
{
    Py_ssize_t i, out = 0;
    if (n <= 32) {
        for (i = 1; i < n; i++) {
            int64_t x = v[i];
            Py_ssize_t j = i;
            for (; j > 0 && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
    }
    else {
        uint64_t *a = (uint64_t *)v, *b = PyMem_RawMalloc((size_t)n * sizeof(uint64_t));
        size_t count[8][256];
        int pass;
        if (!b)
            return -1;
        memset(count, 0, sizeof(count));
        for (i = 0; i < n; i++) { /* the sign bit flipped: signed order as unsigned */
            uint64_t x = a[i] ^ 0x8000000000000000ULL;
            a[i] = x;
            for (pass = 0; pass < 8; pass++)
                count[pass][(x >> (8 * pass)) & 0xFF]++;
        }
        for (pass = 0; pass < 8; pass++) {
            size_t at = 0, k, *c = count[pass];
            uint64_t *swap;
            if (c[(a[0] >> (8 * pass)) & 0xFF] == (size_t)n)
                continue; /* one byte value in every key: already in order by it */
            for (k = 0; k < 256; k++) {
                size_t here = c[k];
                c[k] = at;
                at += here;
            }
            for (i = 0; i < n; i++)
                b[c[(a[i] >> (8 * pass)) & 0xFF]++] = a[i];
            swap = a;
            a = b;
            b = swap;
        }
        for (i = 0; i < n; i++)
            v[i] = (int64_t)(a[i] ^ 0x8000000000000000ULL);
        PyMem_RawFree(a == (uint64_t *)v ? b : a);
    }
    for (i = 0; i < n; i++)
        if (out == 0 || v[i] != v[out - 1])
            v[out++] = v[i];
    return out;
}

/* -- Python functions ------------------------------------------------------------ */

static void
tables_destroy(PyObject *capsule)
{
    Tables *t = PyCapsule_GetPointer(capsule, CAPSULE);
    if (t) {
        charmap_free(&t->fold);
        charmap_free(&t->prepare);
        PyMem_RawFree(t->fold_direct);
        PyMem_RawFree(t);
    }
}

static PyObject *
make_tables(PyObject *self, PyObject *args)
{
    Py_buffer b[6];
    Tables *t;
    PyObject *capsule = NULL;
    uint64_t inv = 1, top = 1;
    uint32_t c;
    int i, ok;
    memset(b, 0, sizeof(b));
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*:tables", &b[0], &b[1], &b[2], &b[3], &b[4],
                          &b[5]))
        return NULL;
    t = PyMem_RawCalloc(1, sizeof(Tables));
    ok = t && charmap_init(&t->fold, &b[0], &b[1], &b[2]) == 0;
    if (ok && charmap_init(&t->prepare, &b[3], &b[4], &b[5]) < 0) {
        charmap_free(&t->fold);
        ok = 0;
    }
    for (i = 0; i < 6; i++)
        PyBuffer_Release(&b[i]);
    if (!ok) {
        if (!t)
            PyErr_NoMemory();
        PyMem_RawFree(t);
        return NULL;
    }
    for (c = 0; c < 0x10000; c++)
        if (Py_UNICODE_ISALNUM((Py_UCS4)c))
            t->alnum[c >> 3] |= (uint8_t)(1 << (c & 7));
    for (c = 0; c < 128; c++)
        t->ascii_alnum[c] = (uint8_t)Py_UNICODE_ISALNUM((Py_UCS4)c);
    t->fold_direct = PyMem_RawMalloc(0x10000 * sizeof(uint32_t));
    if (!t->fold_direct) {
        charmap_free(&t->fold);
        charmap_free(&t->prepare);
        PyMem_RawFree(t);
        return PyErr_NoMemory();
    }
    for (c = 0; c < 0x10000; c++) {
        uint32_t count = 1, d = c;
        const uint32_t *rep = charmap_get(&t->fold, c, &count);
        if (rep && count != 1) {
            t->fold_direct[c] = FOLD_MAP;
            continue;
        }
        if (rep)
            d = rep[0];
        t->fold_direct[c] = d | (is_alnum(t, d) ? FOLD_ALNUM : 0);
    }
    for (i = 0; i < K - 1; i++)
        top *= BASE;
    {
        /* BASE is odd, so invertible modulo 2**64; Newton's iteration doubles the
         * correct low bits each step (x * x == 1 modulo 8 for odd x: 3 to start) */
        uint64_t x = BASE;
        inv = x;
        for (i = 0; i < 6; i++)
            inv *= 2 - x * inv;
    }
    t->base_inv = inv;
    t->base_top = top;
    capsule = PyCapsule_New(t, CAPSULE, tables_destroy);
    if (!capsule) {
        charmap_free(&t->fold);
        charmap_free(&t->prepare);
        PyMem_RawFree(t->fold_direct);
        PyMem_RawFree(t);
    }
    return capsule;
}

static Tables *
get_tables(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, CAPSULE);
}

/* First index of text[:n] that the prepare map changes, or n. */
static Py_ssize_t
first_change(const CharMap *m, int kind, const void *data, Py_ssize_t n)
{
    Py_ssize_t i;
    uint32_t len;
    for (i = 0; i < n; i++)
        if (charmap_get(m, PyUnicode_READ(kind, data, i), &len))
            return i;
    return n;
}

static PyObject *
prepare(PyObject *self, PyObject *args)
{
    PyObject *capsule, *text, *result;
    Tables *t;
    Py_ssize_t n, i;
    int kind, failed = 0;
    const void *data;
    Buf out = {NULL, 0, 0};
    if (!PyArg_ParseTuple(args, "OU:prepare", &capsule, &text) || !(t = get_tables(capsule)) ||
        PyUnicode_READY(text) < 0)
        return NULL;
    n = PyUnicode_GET_LENGTH(text);
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    Py_BEGIN_ALLOW_THREADS
    i = first_change(&t->prepare, kind, data, n);
    if (i < n) {
        Py_ssize_t j;
        failed = buf_grow(&out, (size_t)n) < 0;
        for (j = 0; j < i && !failed; j++) /* the unchanged prefix */
            out.items[out.len++] = PyUnicode_READ(kind, data, j);
    }
    for (; i < n && !failed; i++) {
        uint32_t c = PyUnicode_READ(kind, data, i), count, j;
        const uint32_t *rep = charmap_get(&t->prepare, c, &count);
        if (!rep) {
            rep = &c;
            count = 1;
        }
        if (out.len + count + 1 > out.cap && buf_grow(&out, count + 1) < 0)
            failed = 1;
        for (j = 0; j < count && !failed; j++)
            out.items[out.len++] = rep[j];
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyMem_RawFree(out.items);
        return PyErr_NoMemory();
    }
    if (!out.items)
        return Py_NewRef(text);
    result = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out.items, (Py_ssize_t)out.len);
    PyMem_RawFree(out.items);
    return result;
}

static PyObject *
fingerprints(PyObject *self, PyObject *args)
{
    PyObject *capsule, *text;
    Py_buffer key;
    Tables *t;
    Py_ssize_t n;
    int kind, failed = 0;
    const void *data;
    Buf norm = {NULL, 0, 0};
    uint64_t k0, k1;
    Results r = {NULL, 0, 0};
    PyObject *result;
    if (!PyArg_ParseTuple(args, "OUy*:fingerprints", &capsule, &text, &key))
        return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "the SipHash key is 16 bytes");
        return NULL;
    }
    k0 = load_le64(key.buf);
    k1 = load_le64((const uint8_t *)key.buf + 8);
    PyBuffer_Release(&key);
    if (!(t = get_tables(capsule)) || PyUnicode_READY(text) < 0)
        return NULL;
    n = PyUnicode_GET_LENGTH(text);
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    Py_BEGIN_ALLOW_THREADS
    if (buf_grow(&norm, (size_t)n + (size_t)n / 4) < 0)
        failed = 1;
    else if (kind == PyUnicode_1BYTE_KIND)
        failed = fold_ucs1(t, data, n, &norm) < 0;
    else if (kind == PyUnicode_2BYTE_KIND)
        failed = fold_ucs2(t, data, n, &norm) < 0;
    else
        failed = fold_ucs4(t, data, n, &norm) < 0;
    if (!failed && norm.len >= K &&
        winnow(t, norm.items, (Py_ssize_t)norm.len, k0, k1, &r) < 0)
        failed = 1;
    if (!failed && (r.len = sort_unique(r.items, r.len)) < 0)
        failed = 1;
    Py_END_ALLOW_THREADS
    PyMem_RawFree(norm.items);
    if (failed) {
        PyMem_RawFree(r.items);
        return PyErr_NoMemory();
    }
    result = PyBytes_FromStringAndSize((const char *)r.items, r.len * (Py_ssize_t)sizeof(int64_t));
    PyMem_RawFree(r.items);
    return result;
}

static PyObject *
normalized(PyObject *self, PyObject *args)
{
    PyObject *capsule, *text, *result;
    Tables *t;
    Py_ssize_t n;
    int kind, failed;
    const void *data;
    Buf norm = {NULL, 0, 0};
    if (!PyArg_ParseTuple(args, "OU:normalized", &capsule, &text) ||
        !(t = get_tables(capsule)) || PyUnicode_READY(text) < 0)
        return NULL;
    n = PyUnicode_GET_LENGTH(text);
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    if (buf_grow(&norm, (size_t)n) < 0)
        failed = 1;
    else if (kind == PyUnicode_1BYTE_KIND)
        failed = fold_ucs1(t, data, n, &norm) < 0;
    else if (kind == PyUnicode_2BYTE_KIND)
        failed = fold_ucs2(t, data, n, &norm) < 0;
    else
        failed = fold_ucs4(t, data, n, &norm) < 0;
    result = failed ? PyErr_NoMemory()
                    : PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, norm.items,
                                                (Py_ssize_t)norm.len);
    PyMem_RawFree(norm.items);
    return result;
}

static PyObject *
siphash(PyObject *self, PyObject *args)
{
    Py_buffer key, msg;
    uint64_t h;
    if (!PyArg_ParseTuple(args, "y*y*:siphash24", &key, &msg))
        return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&msg);
        PyErr_SetString(PyExc_ValueError, "the SipHash key is 16 bytes");
        return NULL;
    }
    h = siphash24(load_le64(key.buf), load_le64((const uint8_t *)key.buf + 8), msg.buf,
                  (size_t)msg.len);
    PyBuffer_Release(&key);
    PyBuffer_Release(&msg);
    return PyLong_FromUnsignedLongLong(h);
}

/* in_latin_words(text, is_look_alike, prototype_of, in_word) -> str: what
 * kairo_guard.detect.confusables.in_latin_words computes (its numpy form is the
 * reference), in one pass over the text as it is stored. is_look_alike: a byte a code
 * point (nonzero: a look-alike), the last standing for every code point from there on;
 * prototype_of: a uint32 a code point, as many; in_word: a byte a code point (nonzero:
 * does not end a word), the last standing for every code point from there on. A group
 * is a word and the separator before it; the look-alikes of a group that holds an
 * ASCII letter are replaced by their prototypes. Returns `text` itself when nothing is. */
static PyObject *
latin_words(PyObject *self, PyObject *args)
{
    PyObject *text, *result = NULL;
    Py_buffer alike_buf, proto_buf, word_buf;
    const uint8_t *alike, *word;
    const uint32_t *proto;
    Py_ssize_t n, i, j, start = 0, alike_last, word_last;
    Py_UCS4 *out = NULL;
    int kind, latin = 0, seen = 0, failed = 0;
    const void *data;
    if (!PyArg_ParseTuple(args, "Uy*y*y*:in_latin_words", &text, &alike_buf, &proto_buf,
                          &word_buf))
        return NULL;
    /* the last look-alike entry must be 0: a code point past the table has no prototype
       (and every prototype looked up is then inside the table) */
    if (alike_buf.len < 1 || word_buf.len < 1 ||
        proto_buf.len != alike_buf.len * (Py_ssize_t)sizeof(uint32_t) ||
        ((const uint8_t *)alike_buf.buf)[alike_buf.len - 1]) {
        PyErr_SetString(PyExc_ValueError, "in_latin_words: tables of the wrong shape");
        goto done;
    }
    alike = alike_buf.buf;
    proto = proto_buf.buf;
    word = word_buf.buf;
    alike_last = alike_buf.len - 1;
    word_last = word_buf.len - 1;
    n = PyUnicode_GET_LENGTH(text);
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
#define ALIKE(c) alike[(Py_ssize_t)(c) < alike_last ? (Py_ssize_t)(c) : alike_last]
    for (i = 0; i < n && !seen; i++)
        seen = ALIKE(PyUnicode_READ(kind, data, i)) != 0;
    if (!seen) {
        result = Py_NewRef(text);
        goto done;
    }
    seen = 0;
    for (i = 0; i <= n && !failed; i++) {
        Py_UCS4 c = i < n ? PyUnicode_READ(kind, data, i) : 0;
        int ends = i == n || !word[(Py_ssize_t)c < word_last ? (Py_ssize_t)c : word_last];
        if (ends) { /* the group [start, i) is whole */
            if (latin && seen) {
                if (!out && !(out = PyUnicode_AsUCS4Copy(text)))
                    failed = 1;
                for (j = start; j < i && !failed; j++)
                    if (ALIKE(out[j]))
                        out[j] = proto[out[j]];
            }
            start = i;
            latin = 0;
            seen = i < n && ALIKE(c);
        }
        else {
            latin |= (uint32_t)((c | 0x20) - 0x61) < 26; /* an ASCII letter */
            seen |= ALIKE(c) != 0;
        }
    }
#undef ALIKE
    if (failed)
        goto done;
    result = out ? PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, n) : Py_NewRef(text);
done:
    PyMem_Free(out);
    PyBuffer_Release(&alike_buf);
    PyBuffer_Release(&proto_buf);
    PyBuffer_Release(&word_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"tables", make_tables, METH_VARARGS,
     "tables(fold_keys, fold_offsets, fold_values, prep_keys, prep_offsets, prep_values)"},
    {"prepare", prepare, METH_VARARGS, "prepare(tables, text) -> str"},
    {"fingerprints", fingerprints, METH_VARARGS, "fingerprints(tables, folded, key) -> bytes"},
    {"normalized", normalized, METH_VARARGS, "normalized(tables, folded) -> str"},
    {"siphash24", siphash, METH_VARARGS, "siphash24(key, message) -> int"},
    {"in_latin_words", latin_words, METH_VARARGS,
     "in_latin_words(text, is_look_alike, prototype_of, in_word) -> str"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_winnow", "Native core of kairo_guard.detect.winnow.", -1, methods,
};

PyMODINIT_FUNC
PyInit__winnow(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "K", K) < 0 || PyModule_AddIntConstant(m, "W", W) < 0 ||
              PyModule_AddIntConstant(m, "VERSION", VERSION) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
