// Python binding of the tokenizers (csrc/tokenizers/): a tokenizer is a capsule; batch encoding
// runs on OpenMP threads with the GIL released.
#include "python/lf_python.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/unicode.h"

static const char *CAPSULE = "lorafast.tokenizer";

static void capsule_free(PyObject *capsule) { lf_tokenizer_free(PyCapsule_GetPointer(capsule, CAPSULE)); }

static lf_tokenizer *get_tokenizer(PyObject *capsule) {
    return PyCapsule_GetPointer(capsule, CAPSULE); // sets TypeError/ValueError on a wrong object
}

// An int entry of the config dict (default when absent).
static int config_int(PyObject *config, const char *name, long fallback, long *out) {
    PyObject *v = PyDict_GetItemString(config, name);
    if (v == NULL || v == Py_None) {
        *out = fallback;
        return 0;
    }
    *out = PyLong_AsLong(v);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "tokenizer config %s must be an int", name);
        return -1;
    }
    return 0;
}

static int read_config(PyObject *config, lf_tok_config *cfg, PyObject **prefix_bytes) {
    if (!PyDict_Check(config)) {
        PyErr_SetString(PyExc_TypeError, "tokenizer config must be a dict");
        return -1;
    }
    struct {
        const char *name;
        int *field;
        long fallback;
    } fields[] = {
        {"model", &cfg->model, 0},
        {"pre_tokenizer", &cfg->pre_tokenizer, 0},
        {"bert_normalizer", &cfg->bert_normalizer, 0},
        {"clean_text", &cfg->clean_text, 1},
        {"handle_chinese_chars", &cfg->handle_chinese_chars, 1},
        {"strip_accents", &cfg->strip_accents, 0},
        {"lowercase", &cfg->lowercase, 0},
        {"add_prefix_space", &cfg->add_prefix_space, 0},
        {"prepend_scheme", &cfg->prepend_scheme, 0},
        {"split", &cfg->split, 0},
        {"byte_fallback", &cfg->byte_fallback, 0},
        {"fuse_unk", &cfg->fuse_unk, 0},
        {"max_input_chars_per_word", &cfg->max_input_chars_per_word, 100},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        long v;
        if (config_int(config, fields[i].name, fields[i].fallback, &v)) return -1;
        *fields[i].field = (int)v;
    }
    long unk;
    if (config_int(config, "unk_id", -1, &unk)) return -1;
    cfg->unk_id = (int32_t)unk;
    PyObject *prefix = PyDict_GetItemString(config, "subword_prefix");
    cfg->subword_prefix = NULL;
    if (prefix && prefix != Py_None) {
        *prefix_bytes = PyUnicode_AsUTF8String(prefix);
        if (*prefix_bytes == NULL) return -1;
        cfg->subword_prefix = PyBytes_AS_STRING(*prefix_bytes);
    }
    return 0;
}

typedef struct {
    const char **str;
    size_t *len;
    int32_t *ids;
    size_t n;
} string_table;

static void string_table_free(string_table *t) {
    free(t->str);
    free(t->len);
    free(t->ids);
}

static int string_table_alloc(string_table *t, size_t n) {
    t->n = n;
    t->str = calloc(n + 1, sizeof *t->str);
    t->len = calloc(n + 1, sizeof *t->len);
    t->ids = calloc(n + 1, sizeof *t->ids);
    if (!t->str || !t->len || !t->ids) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int utf8_of(PyObject *s, const char **str, size_t *len, const char *what, Py_ssize_t index) {
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s %zd must be a str, got %s", what, index, Py_TYPE(s)->tp_name);
        return -1;
    }
    Py_ssize_t n;
    *str = PyUnicode_AsUTF8AndSize(s, &n);
    if (*str == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError,
                     "%s %zd is not valid Unicode (a lone surrogate cannot be encoded as UTF-8)", what,
                     index);
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

// vocab: dict str -> int
static int read_vocab(PyObject *vocab, string_table *t) {
    if (!PyDict_Check(vocab)) {
        PyErr_SetString(PyExc_TypeError, "vocab must be a dict of str -> int");
        return -1;
    }
    if (string_table_alloc(t, (size_t)PyDict_Size(vocab))) return -1;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(vocab, &pos, &key, &value)) {
        if (utf8_of(key, &t->str[i], &t->len[i], "vocab token", i)) return -1;
        long id = PyLong_AsLong(value);
        if (id == -1 && PyErr_Occurred()) return -1;
        if (id < 0 || id > INT32_MAX - 1) {
            PyErr_Format(PyExc_ValueError, "vocab: token %R has id %ld outside [0, 2**31-1)", key, id);
            return -1;
        }
        t->ids[i++] = (int32_t)id;
    }
    return 0;
}

// merges: list of "left right" strings or (left, right) pairs
static int read_merges(PyObject *merges, string_table *left, string_table *right) {
    PyObject *seq = PySequence_Fast(merges, "merges must be a list");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = string_table_alloc(left, (size_t)n) || string_table_alloc(right, (size_t)n) ? -1 : 0;
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        PyObject *m = PySequence_Fast_GET_ITEM(seq, i);
        if (PyUnicode_Check(m)) {
            const char *s;
            size_t len;
            rc = utf8_of(m, &s, &len, "merge", i);
            const char *space = rc ? NULL : memchr(s, ' ', len);
            if (rc == 0 && (space == NULL || memchr(space + 1, ' ', len - (size_t)(space + 1 - s)))) {
                PyErr_Format(PyExc_ValueError, "merge %zd (%R) must be two tokens separated by one space", i,
                             m);
                rc = -1;
            }
            if (rc == 0) {
                left->str[i] = s, left->len[i] = (size_t)(space - s);
                right->str[i] = space + 1, right->len[i] = len - left->len[i] - 1;
            }
        } else if (PyTuple_Check(m) || PyList_Check(m)) {
            if (PySequence_Size(m) != 2) {
                PyErr_Format(PyExc_ValueError, "merge %zd must be a pair of tokens", i);
                rc = -1;
            } else {
                PyObject *a = PySequence_Fast_GET_ITEM(m, 0), *b = PySequence_Fast_GET_ITEM(m, 1);
                rc = utf8_of(a, &left->str[i], &left->len[i], "merge", i) ||
                             utf8_of(b, &right->str[i], &right->len[i], "merge", i)
                         ? -1
                         : 0;
            }
        } else {
            PyErr_Format(PyExc_TypeError, "merge %zd must be a str or a pair, got %s", i,
                         Py_TYPE(m)->tp_name);
            rc = -1;
        }
    }
    Py_DECREF(seq);
    return rc;
}

// added: list of (content, id, special, lstrip, rstrip, single_word, normalized)
static int read_added(PyObject *added, lf_added_token **out, int *n_out) {
    PyObject *seq = PySequence_Fast(added, "added tokens must be a list");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    *n_out = (int)n;
    *out = calloc((size_t)n + 1, sizeof **out);
    int rc = *out ? 0 : (PyErr_NoMemory(), -1);
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        lf_added_token *t = &(*out)[i];
        PyObject *content;
        int id;
        Py_ssize_t len;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Uippppp:added token", &content, &id,
                              &t->special, &t->lstrip, &t->rstrip, &t->single_word, &t->normalized)) {
            rc = -1;
            break;
        }
        t->content = PyUnicode_AsUTF8AndSize(content, &len);
        if (t->content == NULL) rc = -1;
        t->len = (size_t)len;
        t->id = id;
    }
    Py_DECREF(seq);
    return rc;
}

// A template part: list of (id, type_id)
static int read_part(PyObject *list, lf_tok_part *p) {
    PyObject *seq = PySequence_Fast(list, "template parts must be lists of (id, type_id)");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    p->n = (int)n;
    p->ids = calloc((size_t)n + 1, sizeof *p->ids);
    p->types = calloc((size_t)n + 1, sizeof *p->types);
    int rc = p->ids && p->types ? 0 : (PyErr_NoMemory(), -1);
    for (Py_ssize_t i = 0; i < n && rc == 0; i++)
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "ii:template token", &p->ids[i],
                              &p->types[i]))
            rc = -1;
    Py_DECREF(seq);
    return rc;
}

static void free_template(lf_tok_template *t) {
    lf_tok_part *parts[] = {&t->pre, &t->post, &t->pair_pre, &t->mid, &t->pair_post};
    for (int i = 0; i < 5; i++) {
        free(parts[i]->ids);
        free(parts[i]->types);
    }
}

// tokenizer_new(config, vocab, merges, added, template) -> capsule
static PyObject *py_tokenizer_new(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *config, *vocab, *merges, *added, *tmpl_obj;
    if (!PyArg_ParseTuple(args, "O!O!OOO:tokenizer_new", &PyDict_Type, &config, &PyDict_Type, &vocab, &merges,
                          &added, &tmpl_obj))
        return NULL;
    lf_tok_config cfg = {0};
    PyObject *prefix = NULL, *result = NULL;
    string_table v = {0}, left = {0}, right = {0};
    lf_added_token *toks = NULL;
    int n_added = 0;
    lf_tok_template tmpl = {0};
    PyObject *pre, *post, *pair_pre, *mid, *pair_post;
    if (read_config(config, &cfg, &prefix) || read_vocab(vocab, &v) ||
        (merges != Py_None && read_merges(merges, &left, &right)) || read_added(added, &toks, &n_added))
        goto done;
    if (!PyArg_ParseTuple(tmpl_obj, "OOOOOi:template", &pre, &post, &pair_pre, &mid, &pair_post,
                          &tmpl.type_b) ||
        read_part(pre, &tmpl.pre) || read_part(post, &tmpl.post) || read_part(pair_pre, &tmpl.pair_pre) ||
        read_part(mid, &tmpl.mid) || read_part(pair_post, &tmpl.pair_post))
        goto done;
    lf_tokenizer *tok;
    Py_BEGIN_ALLOW_THREADS tok = lf_tokenizer_create(&cfg, v.str, v.len, v.ids, v.n, left.str, left.len,
                                                     right.str, right.len, left.n, toks, n_added, &tmpl);
    Py_END_ALLOW_THREADS if (tok == NULL) {
        lf_raise_core_error();
        goto done;
    }
    result = PyCapsule_New(tok, CAPSULE, capsule_free);
    if (result == NULL) lf_tokenizer_free(tok);
done:
    Py_XDECREF(prefix);
    string_table_free(&v);
    string_table_free(&left);
    string_table_free(&right);
    free(toks);
    free_template(&tmpl);
    return result;
}

typedef struct {
    const char **text, **pair;
    size_t *text_len, *pair_len;
    lf_ivec *ids, *types;
    Py_ssize_t n;
} batch;

static void batch_free(batch *b) {
    for (Py_ssize_t i = 0; b->ids && i < b->n; i++) {
        lf_ivec_free(&b->ids[i]);
        lf_ivec_free(&b->types[i]);
    }
    free(b->text);
    free(b->pair);
    free(b->text_len);
    free(b->pair_len);
    free(b->ids);
    free(b->types);
}

static int batch_read(batch *b, PyObject *texts, PyObject *pairs) {
    b->n = PySequence_Fast_GET_SIZE(texts);
    size_t n = (size_t)b->n + 1;
    b->text = calloc(n, sizeof *b->text);
    b->pair = calloc(n, sizeof *b->pair);
    b->text_len = calloc(n, sizeof *b->text_len);
    b->pair_len = calloc(n, sizeof *b->pair_len);
    b->ids = calloc(n, sizeof *b->ids);
    b->types = calloc(n, sizeof *b->types);
    if (!b->text || !b->pair || !b->text_len || !b->pair_len || !b->ids || !b->types) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < b->n; i++) {
        if (utf8_of(PySequence_Fast_GET_ITEM(texts, i), &b->text[i], &b->text_len[i], "text", i)) return -1;
        if (pairs &&
            utf8_of(PySequence_Fast_GET_ITEM(pairs, i), &b->pair[i], &b->pair_len[i], "text_pair", i))
            return -1;
    }
    return 0;
}

// Encodes every item; returns the index of the first failure (its error copied to message), or -1.
static Py_ssize_t batch_encode(const lf_tokenizer *tok, batch *b, const lf_encode_options *opt, int threads,
                               int *code, char *message, size_t message_size) {
    Py_ssize_t failed = -1;
    if (threads <= 0) threads = omp_get_max_threads();
    if (b->n < 2 * threads) threads = b->n > 1 ? (int)((b->n + 1) / 2) : 1;
#pragma omp parallel num_threads(threads)
    {
        lf_tok_scratch scratch = {0};
#pragma omp for schedule(dynamic, 16)
        for (Py_ssize_t i = 0; i < b->n; i++) {
            int rc = lf_tokenizer_encode(tok, (const unsigned char *)b->text[i], b->text_len[i],
                                         (const unsigned char *)b->pair[i], b->pair_len[i], opt, &scratch,
                                         &b->ids[i], &b->types[i]);
            if (rc != LF_OK) {
#pragma omp critical(lf_tokenizer_error)
                if (failed < 0 || i < failed) {
                    failed = i;
                    *code = rc;
                    snprintf(message, message_size, "%s", lf_error_message());
                }
                lf_error_clear();
            }
        }
        lf_tok_scratch_free(&scratch);
    }
    return failed;
}

typedef struct {
    int64_t pad_to; // -1: no padding, 0: to the longest row, else this length (or the longest when longer)
    int64_t multiple;
    int pad_left, as_numpy;
} pad_options;

// The length rows are padded to, as transformers' pad: the longest row (pad_to 0) or pad_to,
// rounded up to a multiple; a row longer than that keeps its length. pad_to < 0: no padding.
static size_t pad_target(const lf_ivec *rows, Py_ssize_t n, const pad_options *p) {
    if (p->pad_to < 0) return 0;
    size_t target = (size_t)p->pad_to;
    for (Py_ssize_t i = 0; p->pad_to == 0 && i < n; i++)
        target = rows[i].len > target ? rows[i].len : target;
    if (p->multiple > 0 && target % (size_t)p->multiple)
        target += (size_t)p->multiple - target % (size_t)p->multiple;
    return target;
}

static size_t row_length(const lf_ivec *row, size_t target) { return row->len > target ? row->len : target; }

// dst: (L,) row padded with fill on one side; ones: 1 per real token instead of the row's values
static void fill_row(const lf_ivec *row, size_t L, int64_t fill, int ones, int pad_left, int64_t *dst) {
    size_t n = row->len, pad = L > n ? L - n : 0, off = pad_left ? pad : 0;
    for (size_t k = 0; k < pad; k++)
        dst[(pad_left ? 0 : n) + k] = fill;
    for (size_t k = 0; k < n; k++)
        dst[off + k] = ones ? 1 : row->data[k];
}

static PyObject *row_list(const lf_ivec *row, size_t L, int64_t fill, int ones, int pad_left, int64_t *tmp) {
    fill_row(row, L, fill, ones, pad_left, tmp);
    PyObject *list = PyList_New((Py_ssize_t)L);
    for (size_t k = 0; list && k < L; k++) {
        PyObject *v = PyLong_FromLongLong(tmp[k]);
        if (v == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)k, v);
    }
    return list;
}

// rows: (n,) sequences -> list of lists, or an (n, L) int64 array, padded as p says
static PyObject *build_output(const lf_ivec *rows, Py_ssize_t n, int64_t fill, int ones,
                              const pad_options *p) {
    size_t target = pad_target(rows, n, p), L = n > 0 ? row_length(&rows[0], target) : target;
    if (p->as_numpy) {
        for (Py_ssize_t i = 0; i < n; i++)
            if (row_length(&rows[i], target) != L)
                return PyErr_Format(
                    PyExc_ValueError,
                    "cannot make a tensor of sequences of different lengths: row %zd has %zu tokens, row 0 "
                    "%zu; use padding=True or truncation=True",
                    i, row_length(&rows[i], target), L);
        npy_intp dims[2] = {n, (npy_intp)L};
        PyObject *arr = PyArray_SimpleNew(2, dims, NPY_INT64);
        if (arr == NULL) return NULL;
        int64_t *data = PyArray_DATA((PyArrayObject *)arr);
        for (Py_ssize_t i = 0; i < n; i++)
            fill_row(&rows[i], L, fill, ones, p->pad_left, data + (size_t)i * L);
        return arr;
    }
    size_t longest = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        longest = row_length(&rows[i], target) > longest ? row_length(&rows[i], target) : longest;
    int64_t *tmp = malloc((longest + 1) * sizeof *tmp);
    if (tmp == NULL) return PyErr_NoMemory();
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list && i < n; i++) {
        PyObject *row = row_list(&rows[i], row_length(&rows[i], target), fill, ones, p->pad_left, tmp);
        if (row == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, row);
    }
    free(tmp);
    return list;
}

// encode_batch(tok, texts, pairs|None, add_special_tokens, max_length, strategy, truncate_left,
//              pad_to, pad_multiple, pad_left, pad_id, pad_type_id, as_numpy, want_mask, want_types,
//              num_threads) -> (input_ids, attention_mask|None, token_type_ids|None)
static PyObject *py_encode_batch(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *texts_obj, *pairs_obj;
    lf_encode_options opt = {0};
    pad_options pad = {0};
    long long max_length, pad_to, multiple, pad_id, pad_type;
    int threads, want_mask, want_types;
    if (!PyArg_ParseTuple(args, "OOOpLiiLLpLLpppi:encode_batch", &capsule, &texts_obj, &pairs_obj,
                          &opt.add_special_tokens, &max_length, &opt.strategy, &opt.truncate_left, &pad_to,
                          &multiple, &pad.pad_left, &pad_id, &pad_type, &pad.as_numpy, &want_mask,
                          &want_types, &threads))
        return NULL;
    opt.max_length = max_length;
    pad.pad_to = pad_to;
    pad.multiple = multiple;
    lf_tokenizer *tok = get_tokenizer(capsule);
    if (tok == NULL) return NULL;
    if (opt.strategy < LF_TRUNC_LONGEST_FIRST || opt.strategy > LF_TRUNC_ONLY_SECOND)
        return PyErr_Format(PyExc_ValueError, "unknown truncation strategy %d", opt.strategy);
    PyObject *texts = PySequence_Fast(texts_obj, "texts must be a list of str");
    if (texts == NULL) return NULL;
    PyObject *pairs = NULL;
    if (pairs_obj != Py_None) {
        pairs = PySequence_Fast(pairs_obj, "text_pair must be a list of str");
        if (pairs == NULL || PySequence_Fast_GET_SIZE(pairs) != PySequence_Fast_GET_SIZE(texts)) {
            if (pairs)
                PyErr_Format(PyExc_ValueError, "text (%zd items) and text_pair (%zd items) differ in length",
                             PySequence_Fast_GET_SIZE(texts), PySequence_Fast_GET_SIZE(pairs));
            Py_DECREF(texts);
            Py_XDECREF(pairs);
            return NULL;
        }
    }
    batch b = {0};
    PyObject *result = NULL;
    if (batch_read(&b, texts, pairs) == 0) {
        int code = LF_OK;
        char message[1024] = "";
        Py_ssize_t failed;
        Py_BEGIN_ALLOW_THREADS failed = batch_encode(tok, &b, &opt, threads, &code, message, sizeof message);
        Py_END_ALLOW_THREADS if (failed >= 0) {
            lf_error(code, "text %zd: %s", failed, message);
            lf_raise_core_error();
        }
        else {
            PyObject *ids = build_output(b.ids, b.n, pad_id, 0, &pad);
            PyObject *mask =
                ids && want_mask ? build_output(b.ids, b.n, 0, 1, &pad) : (Py_INCREF(Py_None), Py_None);
            PyObject *types = ids && mask && want_types ? build_output(b.types, b.n, pad_type, 0, &pad)
                                                        : (Py_INCREF(Py_None), Py_None);
            if (ids && mask && types) result = PyTuple_Pack(3, ids, mask, types);
            Py_XDECREF(ids);
            Py_XDECREF(mask);
            Py_XDECREF(types);
        }
    }
    batch_free(&b);
    Py_DECREF(texts);
    Py_XDECREF(pairs);
    return result;
}

static int read_ids(PyObject *obj, int64_t **ids, size_t *n) {
    PyObject *seq = PySequence_Fast(obj, "token ids must be a sequence of int");
    if (seq == NULL) return -1;
    *n = (size_t)PySequence_Fast_GET_SIZE(seq);
    *ids = malloc((*n + 1) * sizeof **ids);
    int rc = *ids ? 0 : (PyErr_NoMemory(), -1);
    for (size_t i = 0; i < *n && rc == 0; i++) {
        (*ids)[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i));
        if ((*ids)[i] == -1 && PyErr_Occurred()) rc = -1;
    }
    Py_DECREF(seq);
    return rc;
}

// decode(tok, ids, decoder, strip_left, cleanup, skip_special) -> bytes (UTF-8)
static PyObject *py_decode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *ids_obj;
    lf_decode_options opt = {0};
    if (!PyArg_ParseTuple(args, "OOiipp:decode", &capsule, &ids_obj, &opt.decoder, &opt.strip_left,
                          &opt.cleanup, &opt.skip_special))
        return NULL;
    lf_tokenizer *tok = get_tokenizer(capsule);
    if (tok == NULL) return NULL;
    if (opt.decoder < LF_DEC_BYTELEVEL || opt.decoder > LF_DEC_WORDPIECE)
        return PyErr_Format(PyExc_ValueError, "unknown decoder kind %d", opt.decoder);
    int64_t *ids;
    size_t n;
    if (read_ids(ids_obj, &ids, &n)) {
        free(ids);
        return NULL;
    }
    lf_bbuf out = {0};
    int code;
    Py_BEGIN_ALLOW_THREADS code = lf_tokenizer_decode(tok, ids, n, &opt, &out);
    Py_END_ALLOW_THREADS free(ids);
    PyObject *result =
        code ? lf_raise_core_error() : PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    lf_bbuf_free(&out);
    return result;
}

// ids_to_tokens(tok, ids) -> list of str (None where no token has the id)
static PyObject *py_ids_to_tokens(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *ids_obj;
    if (!PyArg_ParseTuple(args, "OO:ids_to_tokens", &capsule, &ids_obj)) return NULL;
    lf_tokenizer *tok = get_tokenizer(capsule);
    int64_t *ids = NULL;
    size_t n;
    if (tok == NULL || read_ids(ids_obj, &ids, &n)) {
        free(ids);
        return NULL;
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        size_t len;
        const unsigned char *t =
            ids[i] >= 0 && ids[i] <= INT32_MAX ? lf_tokenizer_token(tok, (int32_t)ids[i], &len) : NULL;
        PyObject *s = t ? PyUnicode_DecodeUTF8((const char *)t, (Py_ssize_t)len, "strict")
                        : (Py_INCREF(Py_None), Py_None);
        if (s == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    free(ids);
    return list;
}

// tokens_to_ids(tok, tokens, default) -> list of int (default where unknown); added tokens first
static PyObject *py_tokens_to_ids(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *tokens_obj, *fallback;
    if (!PyArg_ParseTuple(args, "OOO:tokens_to_ids", &capsule, &tokens_obj, &fallback)) return NULL;
    lf_tokenizer *tok = get_tokenizer(capsule);
    if (tok == NULL) return NULL;
    PyObject *seq = PySequence_Fast(tokens_obj, "tokens must be a list of str");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list && i < n; i++) {
        const char *s;
        size_t len;
        if (utf8_of(PySequence_Fast_GET_ITEM(seq, i), &s, &len, "token", i)) {
            Py_CLEAR(list);
            break;
        }
        int32_t id = -1;
        for (int k = 0; k < tok->n_added && id < 0; k++)
            if (tok->added[k].tok.len == len && memcmp(tok->added[k].content, s, len) == 0)
                id = tok->added[k].tok.id;
        if (id < 0) id = lf_vocab_find(&tok->vocab, (const unsigned char *)s, len);
        PyObject *v = id >= 0 ? PyLong_FromLong(id) : (Py_INCREF(fallback), fallback);
        PyList_SET_ITEM(list, i, v);
    }
    Py_DECREF(seq);
    return list;
}

// pad(rows, fill, ones, pad_to, pad_multiple, pad_left, as_numpy): rows of ints padded with fill
// (ones: an attention mask of the rows' lengths instead of their values)
static PyObject *py_pad(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rows_obj;
    long long fill, pad_to, multiple;
    int ones;
    pad_options pad = {0};
    if (!PyArg_ParseTuple(args, "OLpLLpp:pad", &rows_obj, &fill, &ones, &pad_to, &multiple, &pad.pad_left,
                          &pad.as_numpy))
        return NULL;
    pad.pad_to = pad_to;
    pad.multiple = multiple;
    PyObject *seq = PySequence_Fast(rows_obj, "rows must be a list of sequences of int");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    lf_ivec *rows = calloc((size_t)n + 1, sizeof *rows);
    PyObject *result = rows ? NULL : PyErr_NoMemory();
    int ok = rows != NULL;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        int64_t *vals = NULL;
        size_t len;
        ok = read_ids(PySequence_Fast_GET_ITEM(seq, i), &vals, &len) == 0 &&
             lf_ivec_reserve(&rows[i], len + 1) == 0;
        for (size_t k = 0; ok && k < len; k++) {
            if (vals[k] < INT32_MIN || vals[k] > INT32_MAX) {
                PyErr_Format(PyExc_ValueError, "row %zd: value %lld does not fit in int32", i,
                             (long long)vals[k]);
                ok = 0;
            }
            rows[i].data[rows[i].len++] = (int32_t)vals[k];
        }
        free(vals);
        if (!ok && !PyErr_Occurred()) lf_raise_core_error();
    }
    if (ok) result = build_output(rows, n, fill, ones, &pad);
    for (Py_ssize_t i = 0; rows && i < n; i++)
        lf_ivec_free(&rows[i]);
    free(rows);
    Py_DECREF(seq);
    return result;
}

static PyObject *py_tokenizer_info(PyObject *self, PyObject *capsule) {
    (void)self;
    lf_tokenizer *tok = get_tokenizer(capsule);
    if (tok == NULL) return NULL;
    return Py_BuildValue("{s:i,s:i,s:s}", "vocab_size", tok->vocab.n_ids, "max_id", tok->max_id,
                         "unicode_version", lf_unicode_version());
}

static PyMethodDef tokenizer_methods[] = {
    {"tokenizer_new", py_tokenizer_new, METH_VARARGS,
     "Creates a tokenizer: (config, vocab, merges, added, template)."},
    {"tokenizer_encode_batch", py_encode_batch, METH_VARARGS, "Encodes a batch of texts on OpenMP threads."},
    {"tokenizer_decode", py_decode, METH_VARARGS, "Decodes ids to UTF-8 bytes."},
    {"tokenizer_ids_to_tokens", py_ids_to_tokens, METH_VARARGS, "Token strings of ids."},
    {"tokenizer_tokens_to_ids", py_tokens_to_ids, METH_VARARGS, "Ids of token strings."},
    {"tokenizer_pad", py_pad, METH_VARARGS, "Pads rows of ints to one length (lists or an int64 array)."},
    {"tokenizer_info", py_tokenizer_info, METH_O, "Vocabulary size and facts of a tokenizer."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_tokenizers(PyObject *module) { return PyModule_AddFunctions(module, tokenizer_methods); }
