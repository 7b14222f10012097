/* Native Merkle root of kairo_guard.core.shard: RFC 6962's tree hash over 32-byte
 * leaves, exactly as merkle_root_python there computes it (the specification and the
 * test oracle); a shard of 10,000 records is verified in a millisecond instead of 15.
 *
 *   root(digests) -> bytes
 *       digests: the leaves, 32 bytes each, concatenated. Leaf hash SHA-256(0x00 || d),
 *       node hash SHA-256(0x01 || left || right), an odd last node carried up a level
 *       (the same tree as the RFC's split at the largest power of two). 32 bytes.
 *
 *   index(digests) -> dict
 *       {hex of digest i: i} for the same leaves: how a sink looks a record up (a digest
 *       repeated keeps its last number).
 *
 *   members(lines, start, stop, view, outcome, position) -> (end, rows)
 *       The scan of vetted shards at a shared sink (kairo_guard.core.shard_lines, whose
 *       Python function of the same name is the specification and the test oracle):
 *       from lines[start] up to lines[stop], each line that is a clean record of a
 *       shard in view is hashed, looked up and given its audit row; the first that is
 *       not one ends the run. end: where it ended; rows: one per record taken.
 *
 * The GIL is released while hashing a tree (members holds it: it builds objects).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/sha.h>
#include <string.h>

/* SHA256_Init and friends on a stack context: OpenSSL 3 deprecates them, but its
 * one-shot SHA256() fetches an implementation on every call (ten times slower here). */
static void
sha256(const unsigned char *data, size_t len, unsigned char *out)
{
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}

static void
tree(const unsigned char *leaves, Py_ssize_t n, unsigned char *level, unsigned char *out)
{
    unsigned char buf[65];
    Py_ssize_t i, m;
    for (i = 0; i < n; i++) {
        buf[0] = 0;
        memcpy(buf + 1, leaves + 32 * i, 32);
        sha256(buf, 33, level + 32 * i);
    }
    while (n > 1) {
        m = 0;
        for (i = 0; i + 1 < n; i += 2, m++) {
            buf[0] = 1;
            memcpy(buf + 1, level + 32 * i, 64); /* read before the write below */
            sha256(buf, 65, level + 32 * m);
        }
        if (n % 2) {
            memmove(level + 32 * m, level + 32 * (n - 1), 32);
            m++;
        }
        n = m;
    }
    memcpy(out, level, 32);
}

/* The one argument: whole 32-byte digests, and how many (0 with an exception set if not) */
static int
digests_arg(PyObject *args, Py_buffer *digests, Py_ssize_t *n)
{
    if (!PyArg_ParseTuple(args, "y*", digests))
        return 0;
    if (digests->len % 32) {
        PyBuffer_Release(digests);
        PyErr_SetString(PyExc_ValueError, "digests must be a concatenation of 32-byte digests");
        return 0;
    }
    *n = digests->len / 32;
    return 1;
}

static PyObject *
root(PyObject *self, PyObject *args)
{
    Py_buffer digests;
    unsigned char out[32];
    unsigned char *level;
    Py_ssize_t n;
    if (!digests_arg(args, &digests, &n))
        return NULL;
    if (n == 0) {
        PyBuffer_Release(&digests);
        sha256((const unsigned char *)"", 0, out);
        return PyBytes_FromStringAndSize((const char *)out, 32);
    }
    level = PyMem_RawMalloc((size_t)n * 32);
    if (level == NULL) {
        PyBuffer_Release(&digests);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    tree((const unsigned char *)digests.buf, n, level, out);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(level);
    PyBuffer_Release(&digests);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

static void
to_hex(const unsigned char *d, Py_UCS1 *out)
{
    static const char hexdigits[] = "0123456789abcdef";
    int k;
    for (k = 0; k < 32; k++) {
        out[2 * k] = (Py_UCS1)hexdigits[d[k] >> 4];
        out[2 * k + 1] = (Py_UCS1)hexdigits[d[k] & 15];
    }
}

static PyObject *
digest_index(PyObject *self, PyObject *args)
{
    Py_buffer digests;
    PyObject *out, *key, *value;
    Py_ssize_t n, i;
    if (!digests_arg(args, &digests, &n))
        return NULL;
    out = PyDict_New();
    for (i = 0; out != NULL && i < n; i++) {
        const unsigned char *d = (const unsigned char *)digests.buf + 32 * i;
        key = PyUnicode_New(64, 127);
        value = PyLong_FromSsize_t(i);
        if (key == NULL || value == NULL) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            Py_CLEAR(out);
            break;
        }
        to_hex(d, PyUnicode_1BYTE_DATA(key));
        if (PyDict_SetItem(out, key, value) < 0)
            Py_CLEAR(out);
        Py_DECREF(key);
        Py_DECREF(value);
    }
    PyBuffer_Release(&digests);
    return out;
}

/* The end of a canonical line of a vetted shard: ,"_kairo":"kp1.<id>.<digest>"} */
static const char MEMBER[] = ",\"_kairo\":\"kp1.";
#define MEMBER_LEN ((Py_ssize_t)sizeof(MEMBER) - 1)
#define SEAL_LEN 101                         /* kp1. + 32 + . + 64 */
#define TAIL (MEMBER_LEN - 4 + SEAL_LEN + 2) /* the member, the seal, "} */

/* A view entry: (index: dict, dirty: set or frozenset, rule, owner); 1 if well formed */
static int
view_entry(PyObject *entry)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 4 ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(entry, 0)) ||
        !PyAnySet_CheckExact(PyTuple_GET_ITEM(entry, 1))) {
        PyErr_SetString(PyExc_TypeError, "view entries are (index, dirty, rule, owner)");
        return 0;
    }
    return 1;
}

static PyObject *
members(PyObject *self, PyObject *args)
{
    PyObject *lines, *view, *outcome, *rows, *entry = NULL;
    Py_ssize_t start, stop, position, i;
    char shard[32];
    if (!PyArg_ParseTuple(args, "O!nnO!On", &PyList_Type, &lines, &start, &stop,
                          &PyDict_Type, &view, &outcome, &position))
        return NULL;
    if (start < 0 || position < 0) {
        PyErr_SetString(PyExc_ValueError, "start and position must not be negative");
        return NULL;
    }
    if (stop > PyList_GET_SIZE(lines))
        stop = PyList_GET_SIZE(lines);
    rows = PyList_New(0);
    if (rows == NULL)
        return NULL;
    for (i = start; i < stop; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i), *digest, *number, *row;
        const char *raw, *seal;
        unsigned char d[32];
        SHA256_CTX c;
        Py_ssize_t n, at;
        if (!PyBytes_CheckExact(line))
            break;
        raw = PyBytes_AS_STRING(line);
        n = PyBytes_GET_SIZE(line);
        at = n - TAIL;
        /* an object with content before the member: '{,"_kairo"' (a sealed {} is
         * written '{"_kairo":...}') and text that is not an object are no record's line */
        if (at <= 1 || raw[0] != '{' || memcmp(raw + at, MEMBER, MEMBER_LEN) != 0 ||
            raw[n - 2] != '"' || raw[n - 1] != '}')
            break;
        seal = raw + at + MEMBER_LEN - 4; /* kp1.<id>.<digest> */
        if (seal[36] != '.')
            break;
        /* the bytes before the seal, closed, are the canonical content exactly when
         * they hash to the seal's digest */
        SHA256_Init(&c);
        SHA256_Update(&c, raw, (size_t)at);
        SHA256_Update(&c, "}", 1);
        SHA256_Final(d, &c);
        digest = PyUnicode_New(64, 127);
        if (digest == NULL)
            goto error;
        to_hex(d, PyUnicode_1BYTE_DATA(digest));
        if (memcmp(PyUnicode_1BYTE_DATA(digest), seal + 37, 64) != 0) {
            Py_DECREF(digest);
            break;
        }
        if (entry == NULL || memcmp(shard, seal + 4, 32) != 0) {
            PyObject *key = PyUnicode_DecodeLatin1(seal + 4, 32, NULL);
            if (key == NULL) {
                Py_DECREF(digest);
                goto error;
            }
            entry = PyDict_GetItemWithError(view, key); /* borrowed: view outlives the call */
            Py_DECREF(key);
            if (entry == NULL || !view_entry(entry)) {
                Py_DECREF(digest);
                if (PyErr_Occurred())
                    goto error;
                break;
            }
            memcpy(shard, seal + 4, 32);
        }
        number = PyDict_GetItemWithError(PyTuple_GET_ITEM(entry, 0), digest);
        if (number == NULL) {
            Py_DECREF(digest);
            if (PyErr_Occurred())
                goto error;
            break;
        }
        if (PySet_GET_SIZE(PyTuple_GET_ITEM(entry, 1)) > 0) {
            int dirty = PySet_Contains(PyTuple_GET_ITEM(entry, 1), number);
            if (dirty != 0) {
                Py_DECREF(digest);
                if (dirty < 0)
                    goto error;
                break;
            }
        }
        number = PyLong_FromSsize_t(position + (i - start));
        row = number == NULL ? NULL
                             : PyTuple_Pack(5, number, outcome, PyTuple_GET_ITEM(entry, 2),
                                            digest, PyTuple_GET_ITEM(entry, 3));
        Py_XDECREF(number);
        Py_DECREF(digest);
        if (row == NULL || PyList_Append(rows, row) < 0) {
            Py_XDECREF(row);
            goto error;
        }
        Py_DECREF(row);
    }
    return Py_BuildValue("(nN)", i, rows);
error:
    Py_DECREF(rows);
    return NULL;
}

static PyMethodDef methods[] = {
    {"root", root, METH_VARARGS, "root(digests) -> bytes: RFC 6962 Merkle tree hash"},
    {"index", digest_index, METH_VARARGS, "index(digests) -> {hex digest: number}"},
    {"members", members, METH_VARARGS,
     "members(lines, start, stop, view, outcome, position) -> (end, rows)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_merkle", "Native Merkle root of kairo_guard.core.shard.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__merkle(void)
{
    return PyModule_Create(&module);
}
