/* Native prefilters of the PII gate and the customer identifier index: one pass over a
 * str finds the shapes their regular expressions need, so a text without them is
 * passed over without running any (kairo_guard.detect.shapes holds the same tests as
 * regular expressions: the specification and the test oracle). Every test is a
 * necessary condition, as exact as the patterns it stands for where that is cheap and a
 * superset where it is not, never narrower: a false "no" would hide PII.
 *
 *   shapes(text) -> (digits, at, longest_run, iban, ssn, cluster)
 *       digits: how many Unicode decimal digits (re's \d);
 *       at: whether it holds "@";
 *       longest_run: the longest run of [\w+/=.-] (re's \w: alphanumeric or "_");
 *       iban: two letters (any alphabetic character: a superset of [A-Z] under
 *           IGNORECASE) then two ASCII digits;
 *       ssn: [0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4};
 *       cluster: \d[\d \t()./-]{8,24}\d (what every phone number match holds).
 *   runs(text, minimum) -> list of (start, end)
 *       the maximal runs of [\w+/=.-] at least `minimum` characters long.
 *   phone_runs(text, minimum) -> list of (start, end)
 *       the maximal runs of [\d \t()./+-] at least `minimum` characters long holding
 *       two digits (\d): where a phone number's match can be.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* ASCII answers from a table (the Unicode database lookups are for the rest) */
#define A_RUN 1
#define A_DECIMAL 2
#define A_ALPHA 4
static unsigned char ascii[128];

static void
init_ascii(void)
{
    int c;
    for (c = 0; c < 128; c++) {
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        int digit = c >= '0' && c <= '9';
        ascii[c] = (unsigned char)((alpha ? A_ALPHA : 0) | (digit ? A_DECIMAL : 0) |
                                   (alpha || digit || c == '_' || c == '+' || c == '/' ||
                                            c == '=' || c == '.' || c == '-'
                                        ? A_RUN
                                        : 0));
    }
}

static int
is_run_char(Py_UCS4 c)
{
    if (c < 128)
        return ascii[c] & A_RUN;
    return Py_UNICODE_ISALNUM(c);
}

static int
is_decimal(Py_UCS4 c)
{
    return c < 128 ? ascii[c] & A_DECIMAL : Py_UNICODE_ISDECIMAL(c);
}

static int
is_alpha(Py_UCS4 c)
{
    return c < 128 ? ascii[c] & A_ALPHA : Py_UNICODE_ISALPHA(c);
}

static int
is_ascii_digit(Py_UCS4 c)
{
    return c >= '0' && c <= '9';
}

static int
is_cluster_sep(Py_UCS4 c)
{
    return c == ' ' || c == '\t' || c == '(' || c == ')' || c == '.' || c == '/' || c == '-';
}

static int
is_ssn_sep(Py_UCS4 c)
{
    return c == '-' || c == ' ' || c == '.';
}

/* [0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4} starting at i */
static int
ssn_at(int kind, const void *data, Py_ssize_t n, Py_ssize_t i)
{
    Py_ssize_t k, j;
    int s1, s2;
    for (k = 0; k < 3; k++)
        if (i + k >= n || !is_ascii_digit(PyUnicode_READ(kind, data, i + k)))
            return 0;
    for (s1 = 0; s1 < 2; s1++) {
        j = i + 3;
        if (s1) {
            if (j >= n || !is_ssn_sep(PyUnicode_READ(kind, data, j)))
                continue;
            j++;
        }
        if (j + 2 > n || !is_ascii_digit(PyUnicode_READ(kind, data, j)) ||
            !is_ascii_digit(PyUnicode_READ(kind, data, j + 1)))
            continue;
        for (s2 = 0; s2 < 2; s2++) {
            Py_ssize_t m = j + 2;
            if (s2) {
                if (m >= n || !is_ssn_sep(PyUnicode_READ(kind, data, m)))
                    continue;
                m++;
            }
            if (m + 4 > n)
                continue;
            for (k = 0; k < 4; k++)
                if (!is_ascii_digit(PyUnicode_READ(kind, data, m + k)))
                    break;
            if (k == 4)
                return 1;
        }
    }
    return 0;
}

/* \d[\d \t()./-]{8,24}\d starting at i (a digit) */
static int
cluster_at(int kind, const void *data, Py_ssize_t n, Py_ssize_t i)
{
    Py_ssize_t j;
    for (j = i + 1; j < n && j <= i + 25; j++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, j);
        int digit = is_decimal(c);
        if (digit && j >= i + 9)
            return 1;
        if (!digit && !is_cluster_sep(c))
            return 0;
    }
    return 0;
}

typedef struct {
    Py_ssize_t digits, longest;
    int at, iban, ssn, cluster;
} Shapes;

/* The scan proper: reads only the string's data, so it runs without the GIL. */
static void
scan(int kind, const void *data, Py_ssize_t n, Shapes *out)
{
    Py_ssize_t i, digits = 0, run = 0, longest = 0;
    int at = 0, iban = 0, ssn = 0, cluster = 0;
    for (i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (is_decimal(c)) {
            digits++;
            if (!cluster && cluster_at(kind, data, n, i))
                cluster = 1;
        }
        if (c == '@')
            at = 1;
        if (is_run_char(c)) {
            if (++run > longest)
                longest = run;
        }
        else
            run = 0;
        if (is_ascii_digit(c)) { /* c at i + 2 of an IBAN's start: two letters before */
            if (!iban && i >= 2 && i + 1 < n &&
                is_ascii_digit(PyUnicode_READ(kind, data, i + 1)) &&
                is_alpha(PyUnicode_READ(kind, data, i - 2)) &&
                is_alpha(PyUnicode_READ(kind, data, i - 1)))
                iban = 1;
            if (!ssn && ssn_at(kind, data, n, i))
                ssn = 1;
        }
    }
    out->digits = digits;
    out->longest = longest;
    out->at = at;
    out->iban = iban;
    out->ssn = ssn;
    out->cluster = cluster;
}

#define UNLOCKED_FROM 8192 /* characters: below, releasing the GIL costs more than it frees */

static PyObject *
shapes(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    int kind;
    const void *data;
    Shapes found;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "shapes() takes a str");
        return NULL;
    }
    n = PyUnicode_GET_LENGTH(arg);
    kind = PyUnicode_KIND(arg);
    data = PyUnicode_DATA(arg);
    if (n >= UNLOCKED_FROM) { /* a body the indexer reads in threads: let the others run */
        Py_BEGIN_ALLOW_THREADS
        scan(kind, data, n, &found);
        Py_END_ALLOW_THREADS
    }
    else
        scan(kind, data, n, &found);
    return Py_BuildValue("(nNnNNN)", found.digits, PyBool_FromLong(found.at), found.longest,
                         PyBool_FromLong(found.iban), PyBool_FromLong(found.ssn),
                         PyBool_FromLong(found.cluster));
}

/* The maximal runs of at least `minimum` run characters of one kind of str, appended
 * to spans as (start, end) pairs; -1 when out of memory. Needs no interpreter state.
 * Only every `minimum`-th character is looked at until one is a run character (a run
 * that long holds one of them), and only then the run around it: a text of short
 * words costs a fraction of a pass. */
#define FIND_RUNS(TYPE, IN)                                                                 \
    do {                                                                                  \
        const TYPE *p = (const TYPE *)data;                                               \
        Py_ssize_t i = minimum - 1;                                                       \
        while (i < n) {                                                                   \
            if (!IN(p[i])) {                                                              \
                i += minimum;                                                             \
                continue;                                                                 \
            }                                                                             \
            Py_ssize_t from = i, to = i + 1;                                              \
            while (from > 0 && IN(p[from - 1]))                                           \
                from--;                                                                   \
            while (to < n && IN(p[to]))                                                   \
                to++;                                                                     \
            i = to + minimum; /* p[to] ends the run: the next long one holds this */      \
            if (to - from < minimum || !WANTED(from, to))                                 \
                continue;                                                                 \
            if (*count == *cap) {                                                         \
                Py_ssize_t more = *cap ? 2 * *cap : 16;                                   \
                Py_ssize_t *grown = PyMem_RawRealloc(*spans, 2 * more * sizeof(**spans)); \
                if (grown == NULL)                                                        \
                    return -1;                                                            \
                *spans = grown;                                                           \
                *cap = more;                                                              \
            }                                                                             \
            (*spans)[2 * *count] = from;                                                  \
            (*spans)[2 * *count + 1] = to;                                                \
            (*count)++;                                                                   \
        }                                                                                 \
    } while (0)

#define ANY_RUN(from, to) 1

static int
find_runs(int kind, const void *data, Py_ssize_t n, Py_ssize_t minimum, Py_ssize_t **spans,
          Py_ssize_t *count, Py_ssize_t *cap)
{
#define WANTED ANY_RUN
    if (minimum < 1)
        minimum = 1;
    if (kind == PyUnicode_1BYTE_KIND)
        FIND_RUNS(Py_UCS1, is_run_char);
    else if (kind == PyUnicode_2BYTE_KIND)
        FIND_RUNS(Py_UCS2, is_run_char);
    else
        FIND_RUNS(Py_UCS4, is_run_char);
#undef WANTED
    return 0;
}

/* A character a phone number's match is made of: re's \d (a Unicode decimal digit) or
 * one of " \t()./+-". */
static int
is_phone_char(Py_UCS4 c)
{
    return is_decimal(c) || c == '+' || is_cluster_sep(c);
}

/* Whether p[from:to] holds two decimal digits (a match holds at least its first and
 * its last). */
#define DEFINE_TWO_DIGITS(NAME, TYPE)                                                     \
    static int NAME(const TYPE *p, Py_ssize_t from, Py_ssize_t to)                        \
    {                                                                                     \
        int seen = 0;                                                                     \
        for (; from < to; from++)                                                         \
            if (is_decimal(p[from]) && ++seen == 2)                                       \
                return 1;                                                                 \
        return 0;                                                                         \
    }
DEFINE_TWO_DIGITS(two_digits_1, Py_UCS1)
DEFINE_TWO_DIGITS(two_digits_2, Py_UCS2)
DEFINE_TWO_DIGITS(two_digits_4, Py_UCS4)

static int
find_phone_runs(int kind, const void *data, Py_ssize_t n, Py_ssize_t minimum,
                Py_ssize_t **spans, Py_ssize_t *count, Py_ssize_t *cap)
{
    if (minimum < 1)
        minimum = 1;
    if (kind == PyUnicode_1BYTE_KIND) {
#define WANTED(from, to) two_digits_1(p, from, to)
        FIND_RUNS(Py_UCS1, is_phone_char);
#undef WANTED
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
#define WANTED(from, to) two_digits_2(p, from, to)
        FIND_RUNS(Py_UCS2, is_phone_char);
#undef WANTED
    }
    else {
#define WANTED(from, to) two_digits_4(p, from, to)
        FIND_RUNS(Py_UCS4, is_phone_char);
#undef WANTED
    }
    return 0;
}

typedef int (*RunFinder)(int, const void *, Py_ssize_t, Py_ssize_t, Py_ssize_t **,
                         Py_ssize_t *, Py_ssize_t *);

/* The spans a finder finds, as a list of (start, end). */
static PyObject *
spans_of(PyObject *args, RunFinder find)
{
    PyObject *text, *out;
    Py_ssize_t minimum, n, *spans = NULL, count = 0, cap = 0, i;
    int kind, failed;
    const void *data;
    if (!PyArg_ParseTuple(args, "Un", &text, &minimum))
        return NULL;
    n = PyUnicode_GET_LENGTH(text);
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    if (n >= UNLOCKED_FROM) {
        Py_BEGIN_ALLOW_THREADS
        failed = find(kind, data, n, minimum, &spans, &count, &cap);
        Py_END_ALLOW_THREADS
    }
    else
        failed = find(kind, data, n, minimum, &spans, &count, &cap);
    if (failed) {
        PyMem_RawFree(spans);
        return PyErr_NoMemory();
    }
    out = PyList_New(count);
    for (i = 0; out != NULL && i < count; i++) {
        PyObject *item = Py_BuildValue("(nn)", spans[2 * i], spans[2 * i + 1]);
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, item);
    }
    PyMem_RawFree(spans);
    return out;
}

static PyObject *
runs(PyObject *self, PyObject *args)
{
    return spans_of(args, find_runs);
}

static PyObject *
phone_runs(PyObject *self, PyObject *args)
{
    return spans_of(args, find_phone_runs);
}

static PyMethodDef methods[] = {
    {"shapes", shapes, METH_O, "shapes(text) -> (digits, at, longest_run, iban, ssn, cluster)"},
    {"runs", runs, METH_VARARGS, "runs(text, minimum) -> [(start, end), ...]"},
    {"phone_runs", phone_runs, METH_VARARGS, "phone_runs(text, minimum) -> [(start, end), ...]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_shapes", "Native prefilters of the PII gate.", -1, methods,
};

PyMODINIT_FUNC
PyInit__shapes(void)
{
    init_ascii();
    return PyModule_Create(&module);
}
