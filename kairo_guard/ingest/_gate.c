/* Native admission of the middleware's common request (kairo_guard.ingest.fast_path).
 * Written for kairo-guard.
 *
 * Keys(pepper, cache, store, clock, ahead, refreshing, refresh)
 *   the API key verifier's in-process cache as the request path reads it:
 *   fingerprint(data) -> bytes    HMAC-SHA256 of data under pepper (the cache's keys);
 *   cached(presented) -> str|None the tenant of a key (bytes) verified and read within
 *       the last second: cache[fingerprint] is an entry with .record.tenant, .fresh
 *       (clock() deadline) and .generation (must equal store.key_generation); in the
 *       last `ahead` seconds of its freshness refresh(fingerprint, presented as str) is
 *       called once (unless the fingerprint is in the set `refreshing`).
 *
 * Gate(keys, refused, max_size, plain, route_plain, context, tracer, overloaded,
 *      route_cache_size, recheck=0.0)
 *   admit(scope) -> (tenant, size) | None
 *       for an http scope (a dict) whose headers (a list or tuple of two-item lists or
 *       tuples of bytes) hold exactly one "authorization" ("Bearer " and a key
 *       Keys.cached knows) and one
 *       "content-length" (digits, 1..max_size), and no header named in `refused`; when
 *       context is empty (a ContextVar's value, or what a callable answers), the
 *       service is not busy and the route is
 *       plain: plain[(path, root_path, raw_path)], filled from route_plain(scope) and
 *       emptied past route_cache_size entries. Busy: tracer() is not None or
 *       overloaded() is true, asked at most every `recheck` seconds (monotonic clock;
 *       0 asks on every request). Anything else, an error included, is None: the
 *       middleware's general path then decides (it fails closed).
 *
 * The same decisions as the Python FastPath and ApiKeyVerifier.cached, which the tests
 * hold it to.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/sha.h>
#include <string.h>
#include <time.h>

static PyObject *s_headers, *s_path, *s_root_path, *s_raw_path, *s_record, *s_tenant,
    *s_fresh, *s_generation, *s_key_generation;

/* ------------------------------------------------------------------ Keys */

typedef struct {
    PyObject_HEAD
    SHA256_CTX inner, outer; /* HMAC-SHA256 states after the pepper's two pads */
    PyObject *cache, *store, *clock, *refreshing, *refresh;
    double ahead;
} Keys;

static PyTypeObject KeysType;

static int Keys_init(Keys *k, PyObject *args, PyObject *kw) {
    static char *names[] = {"pepper", "cache", "store", "clock", "ahead", "refreshing",
                            "refresh", NULL};
    Py_buffer pepper;
    PyObject *cache, *store, *clock, *refreshing, *refresh;
    double ahead;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*O!OOdO!O", names, &pepper, &PyDict_Type,
                                     &cache, &store, &clock, &ahead, &PySet_Type, &refreshing,
                                     &refresh))
        return -1;
    unsigned char block[64] = {0}, pad[64];
    if (pepper.len > 64) {
        SHA256(pepper.buf, (size_t)pepper.len, block);
    } else {
        memcpy(block, pepper.buf, (size_t)pepper.len);
    }
    PyBuffer_Release(&pepper);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
    SHA256_Init(&k->inner);
    SHA256_Update(&k->inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&k->outer);
    SHA256_Update(&k->outer, pad, 64);
    Py_INCREF(cache);
    Py_INCREF(store);
    Py_INCREF(clock);
    Py_INCREF(refreshing);
    Py_INCREF(refresh);
    Py_XSETREF(k->cache, cache);
    Py_XSETREF(k->store, store);
    Py_XSETREF(k->clock, clock);
    Py_XSETREF(k->refreshing, refreshing);
    Py_XSETREF(k->refresh, refresh);
    k->ahead = ahead;
    return 0;
}

static PyObject *fingerprint(Keys *k, const char *data, Py_ssize_t len) {
    unsigned char inner[32], out[32];
    SHA256_CTX c = k->inner;
    SHA256_Update(&c, data, (size_t)len);
    SHA256_Final(inner, &c);
    c = k->outer;
    SHA256_Update(&c, inner, 32);
    SHA256_Final(out, &c);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

/* New reference to the tenant, Py_None (not cached) or NULL (an error). */
static PyObject *cached(Keys *k, const char *data, Py_ssize_t len) {
    if (!k->cache) {
        PyErr_SetString(PyExc_RuntimeError, "Keys was not initialized");
        return NULL;
    }
    PyObject *fp = fingerprint(k, data, len);
    if (!fp) return NULL;
    PyObject *result = NULL, *gen = NULL, *current = NULL, *fresh = NULL, *now = NULL;
    PyObject *entry = PyDict_GetItemWithError(k->cache, fp); /* borrowed */
    if (!entry) {
        if (!PyErr_Occurred()) result = Py_NewRef(Py_None);
        goto done;
    }
    Py_INCREF(entry); /* another thread may replace it in the dict meanwhile */
    gen = PyObject_GetAttr(entry, s_generation);
    current = gen ? PyObject_GetAttr(k->store, s_key_generation) : NULL;
    if (!current) goto done_entry;
    int same = PyObject_RichCompareBool(gen, current, Py_EQ);
    if (same < 0) goto done_entry;
    if (!same) {
        result = Py_NewRef(Py_None);
        goto done_entry;
    }
    fresh = PyObject_GetAttr(entry, s_fresh);
    now = fresh ? PyObject_CallNoArgs(k->clock) : NULL;
    if (!now) goto done_entry;
    double left = PyFloat_AsDouble(fresh) - PyFloat_AsDouble(now);
    if (PyErr_Occurred()) goto done_entry;
    if (!(left > 0)) {
        result = Py_NewRef(Py_None);
        goto done_entry;
    }
    if (left < k->ahead) {
        int busy = PySet_Contains(k->refreshing, fp);
        if (busy < 0) goto done_entry;
        if (!busy) {
            PyObject *presented = PyUnicode_DecodeLatin1(data, len, NULL);
            PyObject *r = presented ? PyObject_CallFunctionObjArgs(k->refresh, fp, presented, NULL)
                                    : NULL;
            Py_XDECREF(presented);
            if (!r) goto done_entry;
            Py_DECREF(r);
        }
    }
    PyObject *record = PyObject_GetAttr(entry, s_record);
    if (record) {
        result = PyObject_GetAttr(record, s_tenant);
        Py_DECREF(record);
    }
done_entry:
    Py_DECREF(entry);
    Py_XDECREF(gen);
    Py_XDECREF(current);
    Py_XDECREF(fresh);
    Py_XDECREF(now);
done:
    Py_DECREF(fp);
    return result;
}

static PyObject *Keys_fingerprint(Keys *k, PyObject *arg) {
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *fp = fingerprint(k, data.buf, data.len);
    PyBuffer_Release(&data);
    return fp;
}

static PyObject *Keys_cached(Keys *k, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "the presented key must be bytes");
        return NULL;
    }
    return cached(k, PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg));
}

static int Keys_traverse(Keys *k, visitproc visit, void *arg) {
    Py_VISIT(k->cache);
    Py_VISIT(k->store);
    Py_VISIT(k->clock);
    Py_VISIT(k->refreshing);
    Py_VISIT(k->refresh);
    return 0;
}

static int Keys_clear(Keys *k) {
    Py_CLEAR(k->cache);
    Py_CLEAR(k->store);
    Py_CLEAR(k->clock);
    Py_CLEAR(k->refreshing);
    Py_CLEAR(k->refresh);
    return 0;
}

static void Keys_dealloc(Keys *k) {
    PyObject_GC_UnTrack(k);
    Keys_clear(k);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

static PyMethodDef Keys_methods[] = {
    {"fingerprint", (PyCFunction)Keys_fingerprint, METH_O,
     "HMAC-SHA256 of a buffer under the pepper."},
    {"cached", (PyCFunction)Keys_cached, METH_O,
     "The tenant of a presented key (bytes) verified within the last second, else None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KeysType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kairo_guard.ingest._gate.Keys",
    .tp_basicsize = sizeof(Keys),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The API key cache as the request path reads it (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Keys_init,
    .tp_dealloc = (destructor)Keys_dealloc,
    .tp_traverse = (traverseproc)Keys_traverse,
    .tp_clear = (inquiry)Keys_clear,
    .tp_methods = Keys_methods,
};

/* ------------------------------------------------------------------ Gate */

typedef struct {
    PyObject_HEAD
    Keys *keys;
    PyObject *refused; /* tuple of bytes */
    long long max_size;
    PyObject *plain, *route_plain, *context, *tracer, *overloaded;
    Py_ssize_t route_cache_size;
    double recheck, next_check; /* monotonic seconds */
    int busy;                   /* tracer() or overloaded() at the last check */
} Gate;

static int Gate_init(Gate *g, PyObject *args, PyObject *kw) {
    static char *names[] = {"keys", "refused", "max_size", "plain", "route_plain", "context",
                            "tracer", "overloaded", "route_cache_size", "recheck", NULL};
    PyObject *keys, *refused, *plain, *route_plain, *context, *tracer, *overloaded;
    long long max_size;
    Py_ssize_t cache_size;
    double recheck = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!LO!OOOOn|d", names, &KeysType, &keys,
                                     &PyTuple_Type, &refused, &max_size, &PyDict_Type, &plain,
                                     &route_plain, &context, &tracer, &overloaded, &cache_size,
                                     &recheck))
        return -1;
    if (!(recheck >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "recheck must be a number of seconds >= 0");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(refused); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(refused, i))) {
            PyErr_SetString(PyExc_TypeError, "refused header names must be bytes");
            return -1;
        }
    }
    Py_INCREF(keys);
    Py_XSETREF(g->keys, (Keys *)keys);
    Py_INCREF(refused);
    Py_XSETREF(g->refused, refused);
    Py_INCREF(plain);
    Py_XSETREF(g->plain, plain);
    Py_INCREF(route_plain);
    Py_XSETREF(g->route_plain, route_plain);
    Py_INCREF(context);
    Py_XSETREF(g->context, context);
    Py_INCREF(tracer);
    Py_XSETREF(g->tracer, tracer);
    Py_INCREF(overloaded);
    Py_XSETREF(g->overloaded, overloaded);
    g->max_size = max_size;
    g->route_cache_size = cache_size;
    g->recheck = recheck;
    g->next_check = 0.0; /* the first request asks */
    g->busy = 1;
    return 0;
}

static int named(PyObject *name, const char *want, Py_ssize_t len) {
    return PyBytes_GET_SIZE(name) == len && memcmp(PyBytes_AS_STRING(name), want, (size_t)len) == 0;
}

static int is_refused(Gate *g, PyObject *name) {
    const char *s = PyBytes_AS_STRING(name);
    Py_ssize_t len = PyBytes_GET_SIZE(name);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(g->refused); i++) {
        PyObject *r = PyTuple_GET_ITEM(g->refused, i);
        if (PyBytes_GET_SIZE(r) == len && memcmp(PyBytes_AS_STRING(r), s, (size_t)len) == 0)
            return 1;
    }
    return 0;
}

/* 1: the callable's answer is true (or it failed: then not admitted), 0: false */
static int says_yes(PyObject *fn) {
    PyObject *r = PyObject_CallNoArgs(fn);
    if (!r) return 1;
    int yes = PyObject_IsTrue(r);
    Py_DECREF(r);
    return yes != 0;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

/* 1: a trace context to continue (or an error: then not admitted), 0: none */
static int has_context(Gate *g) {
    if (!PyContextVar_CheckExact(g->context)) return says_yes(g->context);
    PyObject *value = NULL;
    if (PyContextVar_Get(g->context, NULL, &value) < 0) return 1;
    if (!value) return 0; /* unset and no default: no context */
    int yes = PyObject_IsTrue(value);
    Py_DECREF(value);
    return yes != 0;
}

/* 1: spans are recorded or the spool is over its limit (or an error), 0: neither.
 * Asked of Python at most every g->recheck seconds. */
static int is_busy(Gate *g) {
    struct timespec ts;
    double now = 0.0;
    if (g->recheck > 0.0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        if (now < g->next_check) return g->busy;
    }
    int busy = 1;
    PyObject *tracer = PyObject_CallNoArgs(g->tracer);
    if (tracer) {
        busy = tracer != Py_None || says_yes(g->overloaded);
        Py_DECREF(tracer);
    }
    if (PyErr_Occurred()) { /* not remembered: the next request asks again */
        PyErr_Clear();
        return 1;
    }
    g->busy = busy;
    g->next_check = now + g->recheck;
    return busy;
}

/* 1: plain route, 0: not, -1: error */
static int route_is_plain(Gate *g, PyObject *scope) {
    PyObject *parts[3] = {PyDict_GetItemWithError(scope, s_path),
                          PyDict_GetItemWithError(scope, s_root_path),
                          PyDict_GetItemWithError(scope, s_raw_path)};
    if (PyErr_Occurred()) return -1;
    PyObject *key = PyTuple_New(3);
    if (!key) return -1;
    for (int i = 0; i < 3; i++) PyTuple_SET_ITEM(key, i, Py_NewRef(parts[i] ? parts[i] : Py_None));
    PyObject *known = PyDict_GetItemWithError(g->plain, key); /* borrowed */
    int plain;
    if (known) {
        plain = PyObject_IsTrue(known);
    } else if (PyErr_Occurred()) {
        plain = -1;
    } else {
        PyObject *verdict = PyObject_CallOneArg(g->route_plain, scope);
        plain = verdict ? PyObject_IsTrue(verdict) : -1;
        Py_XDECREF(verdict);
        if (plain >= 0) {
            if (PyDict_GET_SIZE(g->plain) >= g->route_cache_size) PyDict_Clear(g->plain);
            if (PyDict_SetItem(g->plain, key, plain ? Py_True : Py_False) < 0) plain = -1;
        }
    }
    Py_DECREF(key);
    return plain;
}

static PyObject *admit(Gate *g, PyObject *scope) {
    if (!PyDict_Check(scope) || !g->keys) return Py_NewRef(Py_None);
    PyObject *headers = PyDict_GetItemWithError(scope, s_headers);
    if (!headers) { /* no headers (or an error): the general path decides */
        PyErr_Clear();
        return Py_NewRef(Py_None);
    }
    PyObject *seq = PyList_Check(headers) || PyTuple_Check(headers) ? headers : NULL;
    if (!seq) return Py_NewRef(Py_None);
    Py_INCREF(seq);
    PyObject *auth = NULL, *length = NULL, *result = Py_None;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        if (!(PyTuple_Check(item) || PyList_Check(item)) || PySequence_Fast_GET_SIZE(item) != 2)
            goto out;
        PyObject *name = PySequence_Fast_ITEMS(item)[0], *value = PySequence_Fast_ITEMS(item)[1];
        if (!PyBytes_Check(name) || !PyBytes_Check(value)) goto out;
        if (named(name, "authorization", 13)) {
            if (auth) goto out;
            auth = value;
        } else if (named(name, "content-length", 14)) {
            if (length) goto out;
            length = value;
        } else if (is_refused(g, name)) {
            goto out;
        }
    }
    if (!auth || !length) goto out;
    const char *a = PyBytes_AS_STRING(auth);
    Py_ssize_t alen = PyBytes_GET_SIZE(auth);
    if (alen < 7 || memcmp(a, "Bearer ", 7) != 0) goto out;
    const char *d = PyBytes_AS_STRING(length);
    Py_ssize_t dlen = PyBytes_GET_SIZE(length);
    if (dlen < 1 || dlen > 18) goto out; /* 19 digits could overflow; far past any cap */
    long long size = 0;
    for (Py_ssize_t i = 0; i < dlen; i++) {
        if (d[i] < '0' || d[i] > '9') goto out;
        size = size * 10 + (d[i] - '0');
    }
    if (size < 1 || size > g->max_size) goto out;
    if (has_context(g) || is_busy(g)) goto out;
    int plain = route_is_plain(g, scope);
    if (plain != 1) goto out;
    const char *key = a + 7, *end = a + alen;
    while (key < end && is_space(*key)) key++;
    while (end > key && is_space(end[-1])) end--;
    PyObject *tenant = cached(g->keys, key, end - key);
    if (!tenant) goto out;
    if (tenant == Py_None) {
        Py_DECREF(tenant);
        goto out;
    }
    result = Py_BuildValue("(NL)", tenant, size);
    if (!result) result = Py_None;
out:
    Py_DECREF(seq);
    if (PyErr_Occurred()) PyErr_Clear(); /* the general path decides, and fails closed */
    return result == Py_None ? Py_NewRef(Py_None) : result;
}

static PyObject *Gate_admit(Gate *g, PyObject *scope) {
    PyObject *r = admit(g, scope);
    if (!r) {
        PyErr_Clear();
        r = Py_NewRef(Py_None);
    }
    return r;
}

static int Gate_traverse(Gate *g, visitproc visit, void *arg) {
    Py_VISIT(g->keys);
    Py_VISIT(g->refused);
    Py_VISIT(g->plain);
    Py_VISIT(g->route_plain);
    Py_VISIT(g->context);
    Py_VISIT(g->tracer);
    Py_VISIT(g->overloaded);
    return 0;
}

static int Gate_clear(Gate *g) {
    Py_CLEAR(g->keys);
    Py_CLEAR(g->refused);
    Py_CLEAR(g->plain);
    Py_CLEAR(g->route_plain);
    Py_CLEAR(g->context);
    Py_CLEAR(g->tracer);
    Py_CLEAR(g->overloaded);
    return 0;
}

static void Gate_dealloc(Gate *g) {
    PyObject_GC_UnTrack(g);
    Gate_clear(g);
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyMethodDef Gate_methods[] = {
    {"admit", (PyCFunction)Gate_admit, METH_O,
     "(tenant, declared size) for a request the fast path may serve, else None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kairo_guard.ingest._gate.Gate",
    .tp_basicsize = sizeof(Gate),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Admits the middleware's common request (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Gate_init,
    .tp_dealloc = (destructor)Gate_dealloc,
    .tp_traverse = (traverseproc)Gate_traverse,
    .tp_clear = (inquiry)Gate_clear,
    .tp_methods = Gate_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gate", "Native admission of kairo_guard.ingest.fast_path.", -1, NULL,
};

static int intern(PyObject **slot, const char *s) {
    *slot = PyUnicode_InternFromString(s);
    return *slot ? 0 : -1;
}

PyMODINIT_FUNC PyInit__gate(void) {
    if (PyType_Ready(&KeysType) < 0 || PyType_Ready(&GateType) < 0) return NULL;
    if (intern(&s_headers, "headers") || intern(&s_path, "path") ||
        intern(&s_root_path, "root_path") || intern(&s_raw_path, "raw_path") ||
        intern(&s_record, "record") || intern(&s_tenant, "tenant") || intern(&s_fresh, "fresh") ||
        intern(&s_generation, "generation") || intern(&s_key_generation, "key_generation"))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&KeysType);
    Py_INCREF(&GateType);
    if (PyModule_AddObject(m, "Keys", (PyObject *)&KeysType) < 0 ||
        PyModule_AddObject(m, "Gate", (PyObject *)&GateType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
