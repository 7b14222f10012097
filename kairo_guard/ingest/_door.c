/* The middleware's admitted request, served in C (kairo_guard.ingest.door). Written for
 * kairo-guard.
 *
 * Door(config) where config is a dict of: app (the middleware: its .app is run), parts (callable(tenant=, source=) -> (head,
 *   rest, block)), clocked (bool: parts change only when time(NULL) does), provenance
 *   (the RequestProvenance class), guard, source (str), tenant_var (ContextVar), header
 *   (bytes: the response header's name), count (callable(decision, status, size)),
 *   requests ((queue, fold, fold_at): after its first request the door appends
 *   (decision, status, size) to the queue itself and calls fold() when it holds fold_at),
 *   denied (callable(scope, tenant, status, provenance)), writer (callable(loop) -> the
 *   native spool Writer for this process and loop), max_queued (int), scope_key (str),
 *   store_error (exception class), current_tasks (asyncio's dict of running tasks, or
 *   None).
 *
 *   serve(scope, receive, send, tenant, size) -> Admission
 *
 * An Admission is awaited once. It reads the request's one body message; one that is not
 * an "http.request" of exactly `size` bytes with no more to come ends the await with 1
 * (the message is .message: the middleware serves it the general way). Otherwise it
 * hands the body to the spool writer and waits until it is durable; a body the writer
 * refuses or fails ends the await with 2 (answered 503 by the middleware, the app never
 * sees it). Then it puts a RequestProvenance in scope[scope_key], sets the tenant
 * context, runs app(scope, replayed receive, send adding the seal header) and ends with
 * 0 (or the app's exception), having reset the tenant context, counted the request and,
 * for a status not in 1..399, called denied().
 *
 * While it waits it is the future its task waits on (the asyncio future protocol); the
 * writer completes it with set_result((digest, seal)) or set_exception(error). Completed
 * on the loop's thread with no task running (the writer's eventfd callback, or its
 * continuation on the loop's next turn), it resumes its task at once, in the task's
 * context, instead of through loop.call_soon: one handle less per request. Anywhere else
 * its callbacks are scheduled as a future's are.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

enum { S_RECV, S_WAIT, S_APP, S_DONE };
enum { F_PENDING, F_FINISHED, F_CANCELLED };

static PyObject *s_app, *s_type, *s_body, *s_more_body, *s_method, *s_path, *s_status, *s_headers,
    *s_request, *s_start, *s_allow, *s_deny, *s_tenant, *s_source, *s_size, *s_digest,
    *s_seal, *s_complete, *s_guard_attr, *s_source_attr, *s_queued, *s_submit, *s_call_soon,
    *s_call_soon_threadsafe, *s_context, *s_handler, *s_empty;
static PyObject *get_running_loop, *get_running_loop_or_none, *cancelled_error,
    *invalid_state_error, *s_thread_id;
/* Counts this process's forks (in the child): what a door remembered of its loop and
 * writer before a fork is asked for again after it. Read without a system call, where
 * getpid() (and asyncio's get_running_loop(), which calls it on Python 3.11) is one. */
static volatile unsigned long forks;
static void forked_child(void) { forks++; }

typedef struct {
    PyObject_HEAD
    PyObject *app, *parts, *provenance, *guard, *source, *tenant_var, *header, *count, *denied,
        *writer_for, *store_error, *scope_key, *current_tasks, *queue, *append, *fold;
    int clocked, counted; /* counted: `count` ran once (it makes the instruments) */
    Py_ssize_t fold_at;
    Py_ssize_t max_queued;
    PyObject *loop, *writer, *cache; /* the writer of `loop` before fork `forks`; parts cache */
    PyObject *lines; /* path -> (method, meta): request_line()'s */
    PyObject *slots;  /* the provenance class's member descriptors (keep fields alive) */
    PyMemberDef *fields[7]; /* their definitions, or NULL: set as attributes */
    unsigned long forks;
} Door;

typedef struct {
    PyObject_HEAD
    Door *door;
    PyObject *scope, *receive, *send, *tenant, *message, *iter;
    Py_ssize_t size;
    int state;
    /* the future */
    int fstate, blocking;
    int quiet, code; /* stepped by am_send; its end code, -1 before */
    PyObject *loop, *callbacks, *result, *exception;
    unsigned long thread;
    /* the app */
    PyObject *provenance, *token, *sender;
} Admission;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall; /* called as send(message) without an argument tuple */
    PyObject *send, *header;
    long status;
} Sender;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall; /* called as receive() without an argument tuple */
    PyObject *first, *receive;
} Replay;

typedef struct {
    PyObject_HEAD
    PyObject *value;
} Ready;

static PyTypeObject DoorType, AdmissionType, SenderType, ReplayType, ReadyType;

/* ------------------------------------------------------------ helpers */

static int stop_with(PyObject *value) { /* StopIteration(value), value of any type */
    PyObject *exc = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (!exc) return -1;
    PyErr_SetObject(PyExc_StopIteration, exc);
    Py_DECREF(exc);
    return -1;
}

/* The admission ends with `code` (0, 1, 2): StopIteration(code), or, stepped through its
 * am_send (`quiet`), the code kept for am_send to return without an exception. */
static PyObject *stop_code(Admission *a, int code) {
    if (a->quiet) {
        a->code = code;
        return NULL;
    }
    PyObject *v = PyLong_FromLong(code);
    if (v) {
        stop_with(v);
        Py_DECREF(v);
    }
    return NULL;
}

/* The iterator that drives an awaitable (a coroutine drives itself). */
static PyObject *await_iter(PyObject *aw) {
    if (PyCoro_CheckExact(aw)) return Py_NewRef(aw);
    PyAsyncMethods *am = Py_TYPE(aw)->tp_as_async;
    if (!am || !am->am_await) {
        PyErr_Format(PyExc_TypeError, "object %.100s can't be used in 'await' expression",
                     Py_TYPE(aw)->tp_name);
        return NULL;
    }
    PyObject *it = am->am_await(aw);
    if (it && !PyCoro_CheckExact(it) && !PyIter_Check(it)) {
        PyErr_SetString(PyExc_TypeError, "__await__() returned a non-iterator");
        Py_CLEAR(it);
    }
    return it;
}

/* A StopIteration's value into *out (PYGEN_RETURN), else the error stays (PYGEN_ERROR). */
static PySendResult stopped(PyObject **out) {
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) return PYGEN_ERROR;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *v = value ? PyObject_GetAttrString(value, "value") : Py_NewRef(Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (!v) return PYGEN_ERROR;
    *out = v;
    return PYGEN_RETURN;
}

/* iter.throw(*args) as a send result. */
static PySendResult throw_into(PyObject *iter, PyObject *args, PyObject **out) {
    PyObject *meth = PyObject_GetAttrString(iter, "throw");
    if (!meth) return PYGEN_ERROR;
    PyObject *r = PyObject_Call(meth, args, NULL);
    Py_DECREF(meth);
    if (r) {
        *out = r;
        return PYGEN_NEXT;
    }
    return stopped(out);
}

static void raise_args(PyObject *args) { /* raise what throw(typ[, val[, tb]]) names */
    PyObject *typ = PyTuple_GET_ITEM(args, 0);
    PyObject *val = PyTuple_GET_SIZE(args) > 1 ? PyTuple_GET_ITEM(args, 1) : Py_None;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    } else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val == Py_None ? NULL : val);
    } else {
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
    }
}

/* 1 if `loop` is the event loop running in this thread, 0 if not, -1 if it cannot say
 * without asking asyncio (a loop without asyncio's `_thread_id`, e.g. uvloop's). An
 * asyncio loop sets `_thread_id` to its thread's id while it runs and to None when it
 * stops, and a thread runs one loop at a time; a fork since `since` voids the answer (the
 * child's thread may bear the parent's id). */
static int runs_here(PyObject *loop, unsigned long since) {
    if (since != forks) return -1;
    PyObject *tid = PyObject_GetAttr(loop, s_thread_id);
    if (!tid) {
        PyErr_Clear();
        return -1;
    }
    int here = 0;
    if (PyLong_CheckExact(tid)) {
        unsigned long id = PyLong_AsUnsignedLong(tid);
        if (id == (unsigned long)-1 && PyErr_Occurred()) PyErr_Clear();
        else here = id == PyThread_get_thread_ident();
    }
    Py_DECREF(tid);
    return here;
}

/* The running loop (new reference; NULL with RuntimeError when none): the door's last
 * loop when it still runs in this thread, else asyncio's answer. */
static PyObject *running_loop(Door *d) {
    if (d->loop && runs_here(d->loop, d->forks) == 1) return Py_NewRef(d->loop);
    return PyObject_CallNoArgs(get_running_loop);
}

/* ------------------------------------------------------------ Ready, Replay, Sender */

static PyObject *Ready_next(Ready *r) {
    PyObject *v = r->value;
    if (!v) return NULL; /* exhausted: StopIteration(None) */
    r->value = NULL;
    stop_with(v);
    Py_DECREF(v);
    return NULL;
}

static void Ready_dealloc(Ready *r) {
    Py_XDECREF(r->value);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

/* An await's step without the StopIteration (what `await` uses where it can). */
static PySendResult Ready_am_send(Ready *r, PyObject *arg, PyObject **result) {
    *result = r->value ? r->value : Py_NewRef(Py_None); /* handed over */
    r->value = NULL;
    return PYGEN_RETURN;
}

static PyAsyncMethods Ready_async = {.am_await = (unaryfunc)PyObject_SelfIter,
                                     .am_send = (sendfunc)Ready_am_send};

static PyObject *Replay_vectorcall(Replay *r, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "receive() takes no arguments");
        return NULL;
    }
    if (r->first) {
        Ready *ready = PyObject_New(Ready, &ReadyType);
        if (!ready) return NULL;
        ready->value = r->first; /* handed over */
        r->first = NULL;
        return (PyObject *)ready;
    }
    return PyObject_CallNoArgs(r->receive);
}

static int Replay_traverse(Replay *r, visitproc visit, void *arg) {
    Py_VISIT(r->first);
    Py_VISIT(r->receive);
    return 0;
}

static int Replay_clear(Replay *r) {
    Py_CLEAR(r->first);
    Py_CLEAR(r->receive);
    return 0;
}

static void Replay_dealloc(Replay *r) {
    PyObject_GC_UnTrack(r);
    Replay_clear(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *Sender_vectorcall(Sender *s, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "send() takes exactly one argument (the message)");
        return NULL;
    }
    PyObject *message = args[0];
    PyObject *type = PyDict_Check(message) ? PyDict_GetItemWithError(message, s_type) : NULL;
    if (!type && PyErr_Occurred()) return NULL;
    if (type && PyUnicode_Check(type) && PyUnicode_Compare(type, s_start) == 0) {
        PyObject *status = PyDict_GetItemWithError(message, s_status);
        if (!status) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, s_status);
            return NULL;
        }
        long st = PyLong_Check(status) ? PyLong_AsLong(status) : 0;
        if (st == -1 && PyErr_Occurred()) PyErr_Clear(), st = 0;
        s->status = st;
        PyObject *copy = PyDict_Copy(message);
        if (!copy) return NULL;
        PyObject *old = PyDict_GetItemWithError(message, s_headers);
        PyObject *headers = old ? PySequence_List(old) : PyList_New(0);
        if (!headers || PyList_Append(headers, s->header) < 0 ||
            PyDict_SetItem(copy, s_headers, headers) < 0) {
            Py_XDECREF(headers);
            Py_DECREF(copy);
            return NULL;
        }
        Py_DECREF(headers);
        PyObject *r = PyObject_CallOneArg(s->send, copy);
        Py_DECREF(copy);
        return r;
    }
    return PyObject_CallOneArg(s->send, message);
}

static int Sender_traverse(Sender *s, visitproc visit, void *arg) {
    Py_VISIT(s->send);
    Py_VISIT(s->header);
    return 0;
}

static int Sender_clear(Sender *s) {
    Py_CLEAR(s->send);
    Py_CLEAR(s->header);
    return 0;
}

static void Sender_dealloc(Sender *s) {
    PyObject_GC_UnTrack(s);
    Sender_clear(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* ------------------------------------------------------------ the future side */

static PyObject *schedule(Admission *a, PyObject *fn, PyObject *ctx, PyObject *how) {
    PyObject *meth = PyObject_GetAttr(a->loop, how);
    if (!meth) return NULL;
    PyObject *kw = Py_BuildValue("{OO}", s_context, ctx);
    PyObject *args = kw ? PyTuple_Pack(2, fn, (PyObject *)a) : NULL;
    PyObject *r = args ? PyObject_Call(meth, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_DECREF(meth);
    return r;
}

static void report(Admission *a) { /* a callback's error, to the loop's handler */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value) PyException_SetTraceback(value, tb);
    PyObject *ctx = Py_BuildValue("{sssO}", "message", "kairo-guard: exception resuming a request",
                                  "exception", value ? value : Py_None);
    PyObject *r = ctx ? PyObject_CallMethodOneArg(a->loop, s_handler, ctx) : NULL;
    if (!r) PyErr_WriteUnraisable((PyObject *)a);
    Py_XDECREF(r);
    Py_XDECREF(ctx);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* Run (or schedule) the done callbacks: at once when on the loop's thread with no task
 * running, else as a future would. */
static int run_callbacks(Admission *a) {
    PyObject *cbs = a->callbacks;
    a->callbacks = NULL;
    if (!cbs) return 0;
    /* this thread runs the request's loop (not merely owns it: a stopped loop's task is
     * never stepped here) and no task of it is running */
    int direct = runs_here(a->loop, a->door->forks);
    if (direct < 0) {
        PyObject *running = PyObject_CallNoArgs(get_running_loop_or_none);
        direct = running == a->loop;
        Py_XDECREF(running);
        PyErr_Clear();
    }
    if (direct && a->door->current_tasks != Py_None) {
        PyObject *t = PyDict_GetItemWithError(a->door->current_tasks, a->loop);
        if (t || PyErr_Occurred()) direct = 0;
        PyErr_Clear();
    } else {
        direct = 0;
    }
    PyObject *how = direct ? NULL : (PyThread_get_thread_ident() == a->thread
                                         ? s_call_soon : s_call_soon_threadsafe);
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cbs); i++) {
        PyObject *pair = PyList_GET_ITEM(cbs, i);
        PyObject *fn = PyTuple_GET_ITEM(pair, 0), *ctx = PyTuple_GET_ITEM(pair, 1);
        PyObject *r = NULL;
        if (direct && PyContext_Enter(ctx) == 0) {
            r = PyObject_CallOneArg(fn, (PyObject *)a);
            if (!r) report(a);
            if (PyContext_Exit(ctx) < 0) PyErr_WriteUnraisable((PyObject *)a);
            Py_XDECREF(r);
            continue;
        }
        PyErr_Clear();
        r = schedule(a, fn, ctx, how ? how : s_call_soon);
        if (!r) rc = -1;
        Py_XDECREF(r);
    }
    Py_DECREF(cbs);
    return rc;
}

static PyObject *Adm_blocking_get(Admission *a, void *c) { return PyBool_FromLong(a->blocking); }

static int Adm_blocking_set(Admission *a, PyObject *v, void *c) {
    int b = v ? PyObject_IsTrue(v) : 0;
    if (b < 0) return -1;
    a->blocking = b;
    return 0;
}

static PyObject *Adm_message(Admission *a, void *c) {
    return Py_NewRef(a->message ? a->message : Py_None);
}

static PyObject *Adm_get_loop(Admission *a, PyObject *u) {
    return Py_NewRef(a->loop ? a->loop : Py_None);
}

static PyObject *Adm_done(Admission *a, PyObject *u) { return PyBool_FromLong(a->fstate != F_PENDING); }

static PyObject *Adm_cancelled(Admission *a, PyObject *u) {
    return PyBool_FromLong(a->fstate == F_CANCELLED);
}

static PyObject *Adm_result(Admission *a, PyObject *u) {
    if (a->fstate == F_PENDING) {
        PyErr_SetString(invalid_state_error, "Result is not ready.");
        return NULL;
    }
    if (a->fstate == F_CANCELLED) {
        PyErr_SetNone(cancelled_error);
        return NULL;
    }
    if (a->exception) {
        PyErr_SetObject((PyObject *)Py_TYPE(a->exception), a->exception);
        return NULL;
    }
    return Py_NewRef(a->result);
}

static PyObject *Adm_exception(Admission *a, PyObject *u) {
    if (a->fstate == F_PENDING) {
        PyErr_SetString(invalid_state_error, "Exception is not set.");
        return NULL;
    }
    if (a->fstate == F_CANCELLED) {
        PyErr_SetNone(cancelled_error);
        return NULL;
    }
    return Py_NewRef(a->exception ? a->exception : Py_None);
}

static PyObject *Adm_add_done_callback(Admission *a, PyObject *args, PyObject *kw) {
    static char *names[] = {"fn", "context", NULL};
    PyObject *fn, *ctx = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O", names, &fn, &ctx)) return NULL;
    PyObject *own = ctx == Py_None ? PyContext_CopyCurrent() : Py_NewRef(ctx);
    if (!own) return NULL;
    PyObject *r = NULL;
    if (a->fstate != F_PENDING) {
        r = schedule(a, fn, own, s_call_soon);
        Py_XDECREF(r);
        Py_DECREF(own);
        if (!r) return NULL;
        Py_RETURN_NONE;
    }
    if (!a->callbacks && !(a->callbacks = PyList_New(0))) goto fail;
    PyObject *pair = PyTuple_Pack(2, fn, own);
    if (!pair || PyList_Append(a->callbacks, pair) < 0) {
        Py_XDECREF(pair);
        goto fail;
    }
    Py_DECREF(pair);
    Py_DECREF(own);
    Py_RETURN_NONE;
fail:
    Py_DECREF(own);
    return NULL;
}

static PyObject *Adm_remove_done_callback(Admission *a, PyObject *fn) {
    Py_ssize_t removed = 0;
    if (a->callbacks) {
        for (Py_ssize_t i = PyList_GET_SIZE(a->callbacks) - 1; i >= 0; i--) {
            PyObject *f = PyTuple_GET_ITEM(PyList_GET_ITEM(a->callbacks, i), 0);
            int eq = PyObject_RichCompareBool(f, fn, Py_EQ);
            if (eq < 0) return NULL;
            if (eq) {
                if (PySequence_DelItem(a->callbacks, i) < 0) return NULL;
                removed++;
            }
        }
    }
    return PyLong_FromSsize_t(removed);
}

static PyObject *Adm_cancel(Admission *a, PyObject *args, PyObject *kw) {
    static char *names[] = {"msg", NULL};
    PyObject *msg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", names, &msg)) return NULL;
    if (a->fstate != F_PENDING || a->state != S_WAIT) Py_RETURN_FALSE;
    a->fstate = F_CANCELLED;
    PyObject *cbs = a->callbacks; /* scheduled, never run here: cancel() runs in a task */
    a->callbacks = NULL;
    if (cbs) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cbs); i++) {
            PyObject *pair = PyList_GET_ITEM(cbs, i);
            PyObject *r = schedule(a, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1),
                                   s_call_soon);
            if (!r) {
                Py_DECREF(cbs);
                return NULL;
            }
            Py_DECREF(r);
        }
        Py_DECREF(cbs);
    }
    Py_RETURN_TRUE;
}

static PyObject *Adm_set_result(Admission *a, PyObject *result) {
    if (a->fstate != F_PENDING) {
        PyErr_SetString(invalid_state_error, "invalid state");
        return NULL;
    }
    a->result = Py_NewRef(result);
    a->fstate = F_FINISHED;
    if (run_callbacks(a) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Adm_set_exception(Admission *a, PyObject *exc) {
    if (a->fstate != F_PENDING) {
        PyErr_SetString(invalid_state_error, "invalid state");
        return NULL;
    }
    if (!PyExceptionInstance_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "set_exception() needs an exception instance");
        return NULL;
    }
    a->exception = Py_NewRef(exc);
    a->fstate = F_FINISHED;
    if (run_callbacks(a) < 0) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ the request side */

/* Count one request as telemetry.count_request does, without its Python frame once it
 * has run (it makes the instruments): the tally queued, folded when long. */
static int count_request(Door *d, PyObject *decision, long status, Py_ssize_t size) {
    if (!d->counted) {
        PyObject *r = PyObject_CallFunction(d->count, "Oln", decision, status, size);
        if (!r) return -1;
        Py_DECREF(r);
        d->counted = 1;
        return 0;
    }
    PyObject *st = PyLong_FromLong(status), *sz = st ? PyLong_FromSsize_t(size) : NULL;
    PyObject *item = sz ? PyTuple_Pack(3, decision, st, sz) : NULL;
    Py_XDECREF(st);
    Py_XDECREF(sz);
    PyObject *r = item ? PyObject_CallOneArg(d->append, item) : NULL;
    Py_XDECREF(item);
    if (!r) return -1;
    Py_DECREF(r);
    Py_ssize_t queued = PyObject_Length(d->queue);
    if (queued < 0) return -1;
    if (queued >= d->fold_at) {
        r = PyObject_CallNoArgs(d->fold);
        if (!r) return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* The end of the app: tenant context reset, the request counted (and audited when
 * denied). Keeps a pending exception. */
static void finish_app(Admission *a) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    Door *d = a->door;
    if (a->token) {
        if (PyContextVar_Reset(d->tenant_var, a->token) < 0) PyErr_WriteUnraisable(d->tenant_var);
        Py_CLEAR(a->token);
    }
    long status = a->sender ? ((Sender *)a->sender)->status : 0;
    int allowed = 0 < status && status < 400;
    if (!allowed) {
        PyObject *st = status ? PyLong_FromLong(status) : Py_NewRef(Py_None);
        PyObject *r = st ? PyObject_CallFunctionObjArgs(d->denied, a->scope, a->tenant, st,
                                                       a->provenance, NULL)
                         : NULL;
        if (!r) PyErr_WriteUnraisable(d->denied);
        Py_XDECREF(r);
        Py_XDECREF(st);
    }
    if (count_request(d, allowed ? s_allow : s_deny, status, a->size) < 0)
        PyErr_WriteUnraisable(d->count);
    a->state = S_DONE;
    Py_CLEAR(a->iter);
    PyErr_Restore(type, value, tb);
}

/* One step of the app's awaitable, its outcome already in (res, how). */
static PyObject *app_outcome(Admission *a, PySendResult how, PyObject *res) {
    if (how == PYGEN_NEXT) return res;
    if (how == PYGEN_RETURN) Py_DECREF(res);
    finish_app(a);
    return how == PYGEN_RETURN ? stop_code(a, 0) : NULL;
}

/* The provenance's fields, in set_fields()'s order. */
enum { N_FIELDS = 7 };
static PyObject **const field_names[N_FIELDS] = {&s_guard_attr, &s_source_attr, &s_tenant,
                                                 &s_size,       &s_complete,    &s_digest,
                                                 &s_seal};

/* Set the provenance's fields: through their slots' member definitions (found at the
 * door's start), else as attributes. */
static int set_fields(Door *d, PyObject *prov, PyObject *const *values) {
    for (int i = 0; i < N_FIELDS; i++) {
        int rc = d->fields[i] && Py_IS_TYPE(prov, (PyTypeObject *)d->provenance)
                     ? PyMember_SetOne((char *)prov, d->fields[i], values[i])
                     : PyObject_SetAttr(prov, *field_names[i], values[i]);
        if (rc < 0) return -1;
    }
    return 0;
}

static PyObject *start_app(Admission *a) {
    Door *d = a->door;
    PyObject *digest, *seal;
    if (!PyTuple_Check(a->result) || PyTuple_GET_SIZE(a->result) != 2) {
        PyErr_SetString(PyExc_TypeError, "the spool writer's result is not (digest, seal)");
        a->state = S_DONE;
        return NULL;
    }
    digest = PyTuple_GET_ITEM(a->result, 0);
    seal = PyTuple_GET_ITEM(a->result, 1);
    PyTypeObject *cls = (PyTypeObject *)d->provenance;
    PyObject *empty = PyTuple_New(0);
    PyObject *prov = empty ? cls->tp_new(cls, empty, NULL) : NULL;
    Py_XDECREF(empty);
    PyObject *size = prov ? PyLong_FromSsize_t(a->size) : NULL;
    PyObject *values[N_FIELDS] = {d->guard, d->source, a->tenant, size, Py_True, digest, seal};
    if (!size || set_fields(d, prov, values) < 0 ||
        PyObject_SetItem(a->scope, d->scope_key, prov) < 0) {
        Py_XDECREF(size);
        Py_XDECREF(prov);
        a->state = S_DONE;
        return NULL;
    }
    Py_DECREF(size);
    a->provenance = prov;
    PyObject *value = PyUnicode_AsASCIIString(seal);
    Sender *sender = value ? PyObject_GC_New(Sender, &SenderType) : NULL;
    if (!sender) {
        Py_XDECREF(value);
        a->state = S_DONE;
        return NULL;
    }
    sender->vectorcall = (vectorcallfunc)Sender_vectorcall;
    sender->send = Py_NewRef(a->send);
    sender->header = PyTuple_Pack(2, d->header, value);
    sender->status = 0;
    Py_DECREF(value);
    PyObject_GC_Track(sender);
    a->sender = (PyObject *)sender;
    Replay *replay = sender->header ? PyObject_GC_New(Replay, &ReplayType) : NULL;
    if (!replay) {
        a->state = S_DONE;
        return NULL;
    }
    replay->vectorcall = (vectorcallfunc)Replay_vectorcall;
    replay->first = a->message ? Py_NewRef(a->message) : NULL;
    replay->receive = Py_NewRef(a->receive);
    PyObject_GC_Track(replay);
    a->token = PyContextVar_Set(d->tenant_var, a->tenant);
    if (!a->token) {
        Py_DECREF(replay);
        a->state = S_DONE;
        return NULL;
    }
    a->state = S_APP;
    PyObject *app = PyObject_GetAttr(d->app, s_app); /* the owner's app, as it is now */
    PyObject *aw = app ? PyObject_CallFunctionObjArgs(app, a->scope, replay, sender, NULL) : NULL;
    Py_XDECREF(app);
    Py_DECREF(replay);
    if (aw) {
        a->iter = await_iter(aw);
        Py_DECREF(aw);
    }
    if (!a->iter) return app_outcome(a, PYGEN_ERROR, NULL);
    PyObject *res = NULL;
    PySendResult how = PyIter_Send(a->iter, Py_None, &res);
    return app_outcome(a, how, res);
}

/* The parts of the tenant's seal for this second (cached per tenant when the sealer's
 * clock is the system's). */
static PyObject *seal_parts(Door *d, PyObject *tenant) {
    long now = (long)time(NULL);
    if (d->clocked) {
        PyObject *hit = PyDict_GetItemWithError(d->cache, tenant);
        if (hit) {
            if (PyLong_AsLong(PyTuple_GET_ITEM(hit, 0)) == now)
                return Py_NewRef(PyTuple_GET_ITEM(hit, 1));
        } else if (PyErr_Occurred()) {
            return NULL;
        }
    }
    PyObject *kw = Py_BuildValue("{OOOO}", s_tenant, tenant, s_source, d->source);
    PyObject *empty = kw ? PyTuple_New(0) : NULL;
    PyObject *parts = empty ? PyObject_Call(d->parts, empty, kw) : NULL;
    Py_XDECREF(empty);
    Py_XDECREF(kw);
    if (!parts) return NULL;
    if (!PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) != 3) {
        Py_DECREF(parts);
        PyErr_SetString(PyExc_TypeError, "seal parts are not (head, rest, block)");
        return NULL;
    }
    if (d->clocked) {
        if (PyDict_GET_SIZE(d->cache) >= 1024) PyDict_Clear(d->cache);
        PyObject *entry = Py_BuildValue("(lO)", now, parts);
        if (!entry || PyDict_SetItem(d->cache, tenant, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(parts);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return parts;
}

static PyObject *waited(Admission *a);

/* The spool writer of this loop and process (asked for again when either changed, or
 * `force`d: the last one is closed); NULL with an error set when there is none. */
static PyObject *door_writer(Door *d, PyObject *loop, int force) {
    if (force || loop != d->loop || d->forks != forks || !d->writer) {
        PyObject *w = PyObject_CallOneArg(d->writer_for, loop);
        if (!w) return NULL;
        Py_XSETREF(d->writer, w);
        Py_XSETREF(d->loop, Py_NewRef(loop));
        d->forks = forks;
    }
    return d->writer;
}

/* The spooled body's meta: "METHOD path" in UTF-8 (new reference), remembered per path
 * (the door's paths are its routes': few, asked for again and again). */
static PyObject *request_line(Door *d, PyObject *scope) {
    PyObject *method = PyObject_GetItem(scope, s_method);
    if (!method) PyErr_Clear(), method = Py_NewRef(s_empty);
    PyObject *path = PyObject_GetItem(scope, s_path);
    if (!path) PyErr_Clear(), path = Py_NewRef(s_empty);
    PyObject *meta = NULL;
    if (PyUnicode_CheckExact(method) && PyUnicode_CheckExact(path)) {
        PyObject *hit = PyDict_GetItemWithError(d->lines, path);
        if (hit && PyUnicode_Compare(PyTuple_GET_ITEM(hit, 0), method) == 0)
            meta = Py_NewRef(PyTuple_GET_ITEM(hit, 1));
        PyErr_Clear();
    }
    if (!meta) {
        PyObject *line = PyUnicode_FromFormat("%S %S", method, path);
        meta = line ? PyUnicode_AsEncodedString(line, "utf-8", "replace") : NULL;
        Py_XDECREF(line);
        if (meta && PyUnicode_CheckExact(method) && PyUnicode_CheckExact(path)) {
            if (PyDict_GET_SIZE(d->lines) >= 1024) PyDict_Clear(d->lines);
            PyObject *entry = PyTuple_Pack(2, method, meta);
            if (!entry || PyDict_SetItem(d->lines, path, entry) < 0) PyErr_Clear();
            Py_XDECREF(entry);
        }
    }
    Py_DECREF(method);
    Py_DECREF(path);
    return meta;
}

/* The body is the tenant's: hand it to the writer and wait (yield self), or end with 2
 * (refused) or 1 (not the message expected). */
static PyObject *submit(Admission *a) {
    Door *d = a->door;
    PyObject *m = a->message;
    PyObject *type = PyDict_Check(m) ? PyDict_GetItemWithError(m, s_type) : NULL;
    PyObject *body = type ? PyDict_GetItemWithError(m, s_body) : NULL;
    PyObject *more = body ? PyDict_GetItemWithError(m, s_more_body) : NULL;
    if (PyErr_Occurred()) goto fail;
    if (!type || !PyUnicode_Check(type) || PyUnicode_Compare(type, s_request) != 0 || !body ||
        !PyBytes_CheckExact(body) || PyBytes_GET_SIZE(body) != a->size ||
        (more && PyObject_IsTrue(more) != 0)) {
        PyErr_Clear();
        a->state = S_DONE;
        return stop_code(a, 1);
    }
    PyObject *loop = running_loop(d);
    if (!loop) goto fail;
    if (!door_writer(d, loop, 0)) { /* the spool cannot start: 503; anything else raises */
        Py_DECREF(loop);
        if (PyErr_ExceptionMatches(d->store_error)) goto refused;
        goto fail;
    }
    a->loop = loop;
    a->thread = PyThread_get_thread_ident();
    PyObject *queued = PyObject_GetAttr(d->writer, s_queued);
    Py_ssize_t q = queued ? PyLong_AsSsize_t(queued) : -1;
    Py_XDECREF(queued);
    if (q < 0 && PyErr_Occurred()) goto fail;
    if (q > d->max_queued) goto refused;
    PyObject *meta = request_line(d, a->scope);
    PyObject *tenant = meta ? PyUnicode_AsUTF8String(a->tenant) : NULL;
    PyObject *parts = tenant ? seal_parts(d, a->tenant) : NULL;
    PyObject *r = NULL;
    a->state = S_WAIT; /* (a writer may complete it before submit returns) */
    a->fstate = F_PENDING;
    if (parts) {
        PyObject *head = PyTuple_GET_ITEM(parts, 0), *rest = PyTuple_GET_ITEM(parts, 1),
                 *block = PyTuple_GET_ITEM(parts, 2);
        PyObject *argv[8] = {d->writer, (PyObject *)a, tenant, meta, body, head, rest, block};
        r = PyObject_VectorcallMethod(s_submit, argv, 8, NULL);
        if (!r && PyErr_ExceptionMatches(d->store_error)) { /* closed since: a new one? */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyObject *old = Py_NewRef(d->writer);
            if (door_writer(d, loop, 1) && d->writer != old) {
                argv[0] = d->writer;
                r = PyObject_VectorcallMethod(s_submit, argv, 8, NULL);
            }
            Py_DECREF(old);
            if (r || PyErr_Occurred()) {
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            } else {
                PyErr_Restore(type, value, tb); /* the same writer: its refusal stands */
            }
        }
    }
    Py_XDECREF(parts);
    Py_XDECREF(tenant);
    Py_XDECREF(meta);
    if (!r) {
        if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(d->store_error))
            goto refused;
        goto fail;
    }
    Py_DECREF(r);
    if (a->fstate != F_PENDING) return waited(a); /* completed already */
    a->blocking = 1;
    return Py_NewRef((PyObject *)a);
refused:
    PyErr_Clear();
    a->state = S_DONE;
    return stop_code(a, 2);
fail:
    a->state = S_DONE;
    return NULL;
}

static PyObject *recv_outcome(Admission *a, PySendResult how, PyObject *res) {
    if (how == PYGEN_NEXT) return res;
    Py_CLEAR(a->iter);
    if (how == PYGEN_ERROR) {
        a->state = S_DONE;
        return NULL;
    }
    a->message = res;
    return submit(a);
}

static PyObject *waited(Admission *a) {
    if (a->fstate == F_PENDING) {
        a->state = S_DONE;
        PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        return NULL;
    }
    if (a->fstate == F_CANCELLED) {
        a->state = S_DONE;
        PyErr_SetNone(cancelled_error);
        return NULL;
    }
    if (a->exception) { /* the writer could not make it durable */
        a->state = S_DONE;
        return stop_code(a, 2);
    }
    return start_app(a);
}

static PyObject *Adm_send(Admission *a, PyObject *value) {
    PyObject *res = NULL;
    PySendResult how;
    switch (a->state) {
    case S_RECV:
        if (!a->iter) {
            PyObject *aw = PyObject_CallNoArgs(a->receive);
            if (aw) {
                a->iter = await_iter(aw);
                Py_DECREF(aw);
            }
            if (!a->iter) {
                a->state = S_DONE;
                return NULL;
            }
        }
        how = PyIter_Send(a->iter, value, &res);
        return recv_outcome(a, how, res);
    case S_WAIT:
        return waited(a);
    case S_APP:
        how = PyIter_Send(a->iter, value, &res);
        return app_outcome(a, how, res);
    default:
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited admission");
        return NULL;
    }
}

static PyObject *Adm_next(Admission *a) { return Adm_send(a, Py_None); }

static PyObject *Adm_throw(Admission *a, PyObject *args) {
    PyObject *res = NULL;
    if (!PyTuple_GET_SIZE(args)) {
        PyErr_SetString(PyExc_TypeError, "throw expected at least 1 argument");
        return NULL;
    }
    if (a->state == S_RECV && a->iter) {
        PySendResult how = throw_into(a->iter, args, &res);
        return recv_outcome(a, how, res);
    }
    if (a->state == S_APP) {
        PySendResult how = throw_into(a->iter, args, &res);
        return app_outcome(a, how, res);
    }
    a->state = S_DONE; /* waiting (the task is cancelled), not started, or over */
    raise_args(args);
    return NULL;
}

static PyObject *Adm_close(Admission *a, PyObject *u) {
    int state = a->state;
    a->state = S_DONE;
    PyObject *r = Py_NewRef(Py_None);
    if ((state == S_RECV || state == S_APP) && a->iter) {
        Py_DECREF(r);
        r = PyObject_CallMethod(a->iter, "close", NULL);
        if (!r && PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            r = Py_NewRef(Py_None);
        }
    }
    if (state == S_APP) finish_app(a);
    Py_CLEAR(a->iter);
    return r;
}

static int Adm_traverse(Admission *a, visitproc visit, void *arg) {
    Py_VISIT(a->door);
    Py_VISIT(a->scope);
    Py_VISIT(a->receive);
    Py_VISIT(a->send);
    Py_VISIT(a->tenant);
    Py_VISIT(a->message);
    Py_VISIT(a->iter);
    Py_VISIT(a->loop);
    Py_VISIT(a->callbacks);
    Py_VISIT(a->result);
    Py_VISIT(a->exception);
    Py_VISIT(a->provenance);
    Py_VISIT(a->token);
    Py_VISIT(a->sender);
    return 0;
}

static int Adm_clear(Admission *a) {
    Py_CLEAR(a->door);
    Py_CLEAR(a->scope);
    Py_CLEAR(a->receive);
    Py_CLEAR(a->send);
    Py_CLEAR(a->tenant);
    Py_CLEAR(a->message);
    Py_CLEAR(a->iter);
    Py_CLEAR(a->loop);
    Py_CLEAR(a->callbacks);
    Py_CLEAR(a->result);
    Py_CLEAR(a->exception);
    Py_CLEAR(a->provenance);
    Py_CLEAR(a->token);
    Py_CLEAR(a->sender);
    return 0;
}

static void Adm_dealloc(Admission *a) {
    PyObject_GC_UnTrack(a);
    Adm_clear(a);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static PyGetSetDef Adm_getset[] = {
    {"_asyncio_future_blocking", (getter)Adm_blocking_get, (setter)Adm_blocking_set, NULL, NULL},
    {"message", (getter)Adm_message, NULL, "the body message read (None before)", NULL},
    {NULL},
};

static PyMethodDef Adm_methods[] = {
    {"send", (PyCFunction)Adm_send, METH_O, NULL},
    {"throw", (PyCFunction)Adm_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)Adm_close, METH_NOARGS, NULL},
    {"get_loop", (PyCFunction)Adm_get_loop, METH_NOARGS, NULL},
    {"done", (PyCFunction)Adm_done, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)Adm_cancelled, METH_NOARGS, NULL},
    {"result", (PyCFunction)Adm_result, METH_NOARGS, NULL},
    {"exception", (PyCFunction)Adm_exception, METH_NOARGS, NULL},
    {"add_done_callback", (PyCFunction)(void (*)(void))Adm_add_done_callback,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"remove_done_callback", (PyCFunction)Adm_remove_done_callback, METH_O, NULL},
    {"cancel", (PyCFunction)(void (*)(void))Adm_cancel, METH_VARARGS | METH_KEYWORDS, NULL},
    {"set_result", (PyCFunction)Adm_set_result, METH_O, NULL},
    {"set_exception", (PyCFunction)Adm_set_exception, METH_O, NULL},
    {NULL},
};

/* A step as `await` takes it: the end code returned, not raised as StopIteration. */
static PySendResult Adm_am_send(Admission *a, PyObject *arg, PyObject **result) {
    a->quiet = 1;
    a->code = -1;
    PyObject *r = Adm_send(a, arg);
    a->quiet = 0;
    *result = r;
    if (r) return PYGEN_NEXT;
    if (PyErr_Occurred()) return PYGEN_ERROR;
    if (a->code < 0) { /* no path ends so; a clear error if one ever did */
        PyErr_SetString(PyExc_RuntimeError, "the admission ended without an outcome");
        return PYGEN_ERROR;
    }
    *result = PyLong_FromLong(a->code);
    return *result ? PYGEN_RETURN : PYGEN_ERROR;
}

static PyAsyncMethods Adm_async = {.am_await = (unaryfunc)PyObject_SelfIter,
                                   .am_send = (sendfunc)Adm_am_send};

/* ------------------------------------------------------------ Door */

static PyObject *Door_serve(Door *d, PyObject *const *args, Py_ssize_t n) {
    if (n != 5 || !PyUnicode_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "serve(scope, receive, send, tenant: str, size: int)");
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[4]);
    if (size < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    Admission *a = PyObject_GC_New(Admission, &AdmissionType);
    if (!a) return NULL;
    a->door = (Door *)Py_NewRef((PyObject *)d);
    a->scope = Py_NewRef(args[0]);
    a->receive = Py_NewRef(args[1]);
    a->send = Py_NewRef(args[2]);
    a->tenant = Py_NewRef(args[3]);
    a->size = size;
    a->state = S_RECV;
    a->fstate = F_PENDING;
    a->blocking = 0;
    a->quiet = 0;
    a->code = -1;
    a->thread = 0;
    a->message = a->iter = a->loop = a->callbacks = a->result = a->exception = NULL;
    a->provenance = a->token = a->sender = NULL;
    PyObject_GC_Track(a);
    return (PyObject *)a;
}

static int Door_init(Door *d, PyObject *args, PyObject *kw) {
    PyObject *c;
    if (!PyArg_ParseTuple(args, "O!:Door", &PyDict_Type, &c)) return -1;
    struct { const char *name; PyObject **slot; } items[] = {
        {"app", &d->app}, {"parts", &d->parts}, {"provenance", &d->provenance},
        {"guard", &d->guard}, {"source", &d->source}, {"tenant_var", &d->tenant_var},
        {"header", &d->header}, {"count", &d->count}, {"denied", &d->denied},
        {"writer", &d->writer_for}, {"store_error", &d->store_error},
        {"scope_key", &d->scope_key}, {"current_tasks", &d->current_tasks},
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        PyObject *v = PyDict_GetItemString(c, items[i].name);
        if (!v) {
            PyErr_Format(PyExc_KeyError, "Door config lacks %s", items[i].name);
            return -1;
        }
        Py_XSETREF(*items[i].slot, Py_NewRef(v));
    }
    if (!PyType_Check(d->provenance) || !PyUnicode_Check(d->source) ||
        !PyContextVar_CheckExact(d->tenant_var) || !PyBytes_Check(d->header) ||
        !PyExceptionClass_Check(d->store_error) ||
        (d->current_tasks != Py_None && !PyDict_Check(d->current_tasks))) {
        PyErr_SetString(PyExc_TypeError, "Door config of the wrong types");
        return -1;
    }
    PyObject *clocked = PyDict_GetItemString(c, "clocked");
    PyObject *max_queued = PyDict_GetItemString(c, "max_queued");
    if (!clocked || !max_queued) {
        PyErr_SetString(PyExc_KeyError, "Door config lacks clocked or max_queued");
        return -1;
    }
    PyObject *requests = PyDict_GetItemString(c, "requests");
    if (!requests || !PyTuple_Check(requests) || PyTuple_GET_SIZE(requests) != 3 ||
        !PyCallable_Check(PyTuple_GET_ITEM(requests, 1))) {
        PyErr_SetString(PyExc_TypeError, "Door config's requests is not (queue, fold, fold_at)");
        return -1;
    }
    Py_XSETREF(d->queue, Py_NewRef(PyTuple_GET_ITEM(requests, 0)));
    Py_XSETREF(d->append, PyObject_GetAttrString(d->queue, "append"));
    Py_XSETREF(d->fold, Py_NewRef(PyTuple_GET_ITEM(requests, 1)));
    d->fold_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(requests, 2));
    if (!d->append || (d->fold_at == -1 && PyErr_Occurred())) return -1;
    d->counted = 0;
    d->clocked = PyObject_IsTrue(clocked);
    d->max_queued = PyLong_AsSsize_t(max_queued);
    if (d->clocked < 0 || (d->max_queued == -1 && PyErr_Occurred())) return -1;
    Py_XSETREF(d->cache, PyDict_New());
    Py_XSETREF(d->lines, PyDict_New());
    Py_XSETREF(d->slots, PyList_New(0));
    if (!d->cache || !d->lines || !d->slots) return -1;
    for (int i = 0; i < N_FIELDS; i++) { /* a plain object slot of that name, or NULL */
        PyObject *descr = PyObject_GetAttr(d->provenance, *field_names[i]);
        d->fields[i] = NULL;
        if (!descr) {
            PyErr_Clear();
            continue;
        }
        if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *def = ((PyMemberDescrObject *)descr)->d_member;
            if (def->type == T_OBJECT_EX && !(def->flags & READONLY)) {
                if (PyList_Append(d->slots, descr) < 0) {
                    Py_DECREF(descr);
                    return -1;
                }
                d->fields[i] = def;
            }
        }
        Py_DECREF(descr);
    }
    return 0;
}

static int Door_traverse(Door *d, visitproc visit, void *arg) {
    Py_VISIT(d->app);
    Py_VISIT(d->parts);
    Py_VISIT(d->provenance);
    Py_VISIT(d->guard);
    Py_VISIT(d->source);
    Py_VISIT(d->tenant_var);
    Py_VISIT(d->header);
    Py_VISIT(d->count);
    Py_VISIT(d->denied);
    Py_VISIT(d->writer_for);
    Py_VISIT(d->store_error);
    Py_VISIT(d->scope_key);
    Py_VISIT(d->current_tasks);
    Py_VISIT(d->queue);
    Py_VISIT(d->append);
    Py_VISIT(d->fold);
    Py_VISIT(d->loop);
    Py_VISIT(d->writer);
    Py_VISIT(d->cache);
    Py_VISIT(d->lines);
    Py_VISIT(d->slots);
    return 0;
}

static int Door_clear(Door *d) {
    Py_CLEAR(d->app);
    Py_CLEAR(d->parts);
    Py_CLEAR(d->provenance);
    Py_CLEAR(d->guard);
    Py_CLEAR(d->source);
    Py_CLEAR(d->tenant_var);
    Py_CLEAR(d->header);
    Py_CLEAR(d->count);
    Py_CLEAR(d->denied);
    Py_CLEAR(d->writer_for);
    Py_CLEAR(d->store_error);
    Py_CLEAR(d->scope_key);
    Py_CLEAR(d->current_tasks);
    Py_CLEAR(d->queue);
    Py_CLEAR(d->append);
    Py_CLEAR(d->fold);
    Py_CLEAR(d->loop);
    Py_CLEAR(d->writer);
    Py_CLEAR(d->cache);
    Py_CLEAR(d->lines);
    Py_CLEAR(d->slots);
    return 0;
}

static void Door_dealloc(Door *d) {
    PyObject_GC_UnTrack(d);
    Door_clear(d);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static PyMethodDef Door_methods[] = {
    {"serve", (PyCFunction)(void (*)(void))Door_serve, METH_FASTCALL,
     "serve(scope, receive, send, tenant, size) -> Admission (await it once)."},
    {NULL},
};

#define GC_TYPE_FLAGS(T, NAME, DOC, FLAGS)                                                  \
    .tp_name = "kairo_guard.ingest._door." NAME, .tp_basicsize = sizeof(T),                  \
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | (FLAGS), .tp_doc = DOC
#define GC_TYPE(T, NAME, DOC) GC_TYPE_FLAGS(T, NAME, DOC, 0)
#define CALLED_TYPE(T, NAME, DOC) GC_TYPE_FLAGS(T, NAME, DOC, Py_TPFLAGS_HAVE_VECTORCALL)

static PyTypeObject DoorType = {
    PyVarObject_HEAD_INIT(NULL, 0) GC_TYPE(Door, "Door", "The admitted request's server."),
    .tp_new = PyType_GenericNew, .tp_init = (initproc)Door_init,
    .tp_dealloc = (destructor)Door_dealloc, .tp_traverse = (traverseproc)Door_traverse,
    .tp_clear = (inquiry)Door_clear, .tp_methods = Door_methods,
};

static PyTypeObject AdmissionType = {
    PyVarObject_HEAD_INIT(NULL, 0) GC_TYPE(Admission, "Admission", "One admitted request."),
    .tp_dealloc = (destructor)Adm_dealloc, .tp_traverse = (traverseproc)Adm_traverse,
    .tp_clear = (inquiry)Adm_clear, .tp_methods = Adm_methods, .tp_getset = Adm_getset,
    .tp_as_async = &Adm_async, .tp_iter = PyObject_SelfIter, .tp_iternext = (iternextfunc)Adm_next,
};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0) CALLED_TYPE(Sender, "Sender", "send, adding the seal header."),
    .tp_call = PyVectorcall_Call, .tp_vectorcall_offset = offsetof(Sender, vectorcall),
    .tp_dealloc = (destructor)Sender_dealloc,
    .tp_traverse = (traverseproc)Sender_traverse, .tp_clear = (inquiry)Sender_clear,
};

static PyTypeObject ReplayType = {
    PyVarObject_HEAD_INIT(NULL, 0) CALLED_TYPE(Replay, "Replay", "receive, the read message first."),
    .tp_call = PyVectorcall_Call, .tp_vectorcall_offset = offsetof(Replay, vectorcall),
    .tp_dealloc = (destructor)Replay_dealloc,
    .tp_traverse = (traverseproc)Replay_traverse, .tp_clear = (inquiry)Replay_clear,
};

static PyTypeObject ReadyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kairo_guard.ingest._door.Ready",
    .tp_basicsize = sizeof(Ready), .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)Ready_dealloc, .tp_as_async = &Ready_async,
    .tp_iter = PyObject_SelfIter, .tp_iternext = (iternextfunc)Ready_next,
};

static struct PyModuleDef door_module = {
    PyModuleDef_HEAD_INIT, "_door", "The middleware's admitted request, served in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__door(void) {
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_app, "app"}, {&s_type, "type"}, {&s_body, "body"}, {&s_more_body, "more_body"},
        {&s_method, "method"}, {&s_path, "path"}, {&s_status, "status"},
        {&s_headers, "headers"}, {&s_request, "http.request"},
        {&s_start, "http.response.start"}, {&s_allow, "allow"}, {&s_deny, "deny"},
        {&s_tenant, "tenant"}, {&s_source, "source"}, {&s_size, "size"},
        {&s_digest, "digest"}, {&s_seal, "seal"}, {&s_complete, "complete"},
        {&s_guard_attr, "_guard"}, {&s_source_attr, "_source"}, {&s_queued, "queued_bytes"},
        {&s_submit, "submit"}, {&s_call_soon, "call_soon"},
        {&s_call_soon_threadsafe, "call_soon_threadsafe"}, {&s_context, "context"},
        {&s_handler, "call_exception_handler"}, {&s_empty, ""}, {&s_thread_id, "_thread_id"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!(*names[i].slot = PyUnicode_InternFromString(names[i].text))) return NULL;
    PyObject *aio = PyImport_ImportModule("_asyncio");
    PyObject *exc = aio ? PyImport_ImportModule("asyncio.exceptions") : NULL;
    if (!exc) {
        Py_XDECREF(aio);
        return NULL;
    }
    get_running_loop = PyObject_GetAttrString(aio, "get_running_loop");
    get_running_loop_or_none = PyObject_GetAttrString(aio, "_get_running_loop");
    cancelled_error = PyObject_GetAttrString(exc, "CancelledError");
    invalid_state_error = PyObject_GetAttrString(exc, "InvalidStateError");
    Py_DECREF(aio);
    Py_DECREF(exc);
    if (!get_running_loop || !get_running_loop_or_none || !cancelled_error ||
        !invalid_state_error)
        return NULL;
    if (pthread_atfork(NULL, NULL, forked_child) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot register the door's fork handler");
        return NULL;
    }
    PyTypeObject *types[] = {&DoorType, &AdmissionType, &SenderType, &ReplayType, &ReadyType};
    for (size_t i = 0; i < 5; i++)
        if (PyType_Ready(types[i]) < 0) return NULL;
    PyObject *m = PyModule_Create(&door_module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Door", (PyObject *)&DoorType) < 0 ||
        PyModule_AddObjectRef(m, "Admission", (PyObject *)&AdmissionType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
