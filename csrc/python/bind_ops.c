// Single ops of csrc/ops/ callable from Python, for the op-level parity tests (tests/test_ops.py)
// and for checking CUDA kernels against the CPU reference. Arrays in, new arrays out.
#include "python/lf_python.h"

#include <omp.h>

#include "core/error.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/crossentropy.h"
#include "ops/dropout.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/matmul_bf16.h"

// a C-contiguous float32 array with ndim dims (cast from any real array), or NULL
static PyArrayObject *f32(PyObject *obj, int ndim, const char *what) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(
        obj, NPY_FLOAT32, ndim, ndim, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (a == NULL) PyErr_Format(PyExc_ValueError, "%s must be a %d-D float array", what, ndim);
    return a;
}

// 1 when p is a dropout probability in [0, 1), else 0 with a ValueError naming it
static int dropout_p_valid(float p) {
    if (p >= 0.0f && p < 1.0f) return 1;
    PyErr_Format(PyExc_ValueError, "p must be in [0, 1), got %g", p);
    return 0;
}

static PyArrayObject *zeros_like(PyArrayObject *a) {
    return (PyArrayObject *)PyArray_ZEROS(PyArray_NDIM(a), PyArray_DIMS(a), NPY_FLOAT32, 0);
}

static float *F(PyArrayObject *a) { return a ? (float *)PyArray_DATA(a) : NULL; }

// an f32 array of a's shape full of NaN: the output of an op that writes every element (a test of
// the op that finds a NaN left found an element it did not write)
static PyArrayObject *nan_like(PyArrayObject *a) {
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(a), PyArray_DIMS(a), NPY_FLOAT32, 0);
    float *o = F(out);
    for (npy_intp i = 0; out != NULL && i < PyArray_SIZE(out); i++)
        o[i] = NAN;
    return out;
}

typedef struct {
    PyArrayObject *q, *k, *v, *offsets;
    attention_shape s;
    int T;
} attention_args;

static void attention_release(attention_args *a) {
    Py_XDECREF(a->q);
    Py_XDECREF(a->k);
    Py_XDECREF(a->v);
    Py_XDECREF(a->offsets);
}

static int attention_parse(attention_args *a, PyObject *q, PyObject *k, PyObject *v, PyObject *offsets,
                           int NH, int NKV, int causal, int window) {
    *a = (attention_args){0};
    a->q = f32(q, 2, "q"), a->k = f32(k, 2, "k"), a->v = f32(v, 2, "v");
    a->offsets = (PyArrayObject *)PyArray_FROMANY(offsets, NPY_INT32, 1, 1,
                                                  NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!a->q || !a->k || !a->v || !a->offsets) return -1;
    int B = (int)PyArray_DIM(a->offsets, 0) - 1, T = (int)PyArray_DIM(a->q, 0);
    const int32_t *off = PyArray_DATA(a->offsets);
    if (NH < 1 || NKV < 1 || NH % NKV || PyArray_DIM(a->q, 1) % NH)
        return PyErr_SetString(PyExc_ValueError, "bad head counts"), -1;
    int HD = (int)PyArray_DIM(a->q, 1) / NH;
    if (B < 1 || off[0] != 0 || off[B] != T || PyArray_DIM(a->k, 0) != T || PyArray_DIM(a->v, 0) != T ||
        PyArray_DIM(a->k, 1) != NKV * HD || PyArray_DIM(a->v, 1) != NKV * HD)
        return PyErr_SetString(PyExc_ValueError, "q, k, v, offsets shapes disagree"), -1;
    for (int b = 0; b < B; b++)
        if (off[b + 1] <= off[b]) return PyErr_SetString(PyExc_ValueError, "offsets must increase"), -1;
    a->s = (attention_shape){.B = B, .NH = NH, .NKV = NKV, .HD = HD, .causal = causal, .window = window};
    a->T = T;
    return 0;
}

// the optional probability dropout (p, key) of the attention bindings
static int attention_dropout(attention_args *a, float p, unsigned long long key) {
    if (!(p >= 0.0f && p < 1.0f))
        return PyErr_Format(PyExc_ValueError, "dropout must be in [0, 1), got %g", p), -1;
    a->s.dropout = p;
    a->s.key = key;
    return 0;
}

// attention_forward(q, k, v, offsets, n_heads, n_kv_heads, causal, window, dropout=0, key=0) -> (out, lse)
static PyObject *py_attention_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *q, *k, *v, *offsets;
    int NH, NKV, causal, window;
    float p = 0.0f;
    unsigned long long key = 0;
    if (!PyArg_ParseTuple(args, "OOOOiipi|fK", &q, &k, &v, &offsets, &NH, &NKV, &causal, &window, &p, &key))
        return NULL;
    attention_args a;
    PyObject *result = NULL;
    if (attention_parse(&a, q, k, v, offsets, NH, NKV, causal, window) == 0 &&
        attention_dropout(&a, p, key) == 0) {
        npy_intp ld[2] = {a.T, NH};
        PyArrayObject *out = zeros_like(a.q), *lse = (PyArrayObject *)PyArray_ZEROS(2, ld, NPY_FLOAT32, 0);
        float *scratch = malloc(attention_scratch_floats(a.T, omp_get_max_threads()) * sizeof(float));
        attention_forward(F(out), F(lse), F(a.q), F(a.k), F(a.v), PyArray_DATA(a.offsets), a.s, scratch);
        free(scratch);
        result = Py_BuildValue("(NN)", out, lse);
    }
    attention_release(&a);
    return result;
}

// attention_backward(dout, out, lse, q, k, v, offsets, n_heads, n_kv_heads, causal, window, dropout=0,
//                    key=0) -> (dq, dk, dv)
static PyObject *py_attention_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dout_o, *out_o, *lse_o, *q, *k, *v, *offsets;
    int NH, NKV, causal, window;
    float p = 0.0f;
    unsigned long long key = 0;
    if (!PyArg_ParseTuple(args, "OOOOOOOiipi|fK", &dout_o, &out_o, &lse_o, &q, &k, &v, &offsets, &NH, &NKV,
                          &causal, &window, &p, &key))
        return NULL;
    attention_args a;
    PyObject *result = NULL;
    PyArrayObject *dout = f32(dout_o, 2, "dout"), *out = f32(out_o, 2, "out"), *lse = f32(lse_o, 2, "lse");
    int ok = dout && out && lse && attention_parse(&a, q, k, v, offsets, NH, NKV, causal, window) == 0 &&
             attention_dropout(&a, p, key) == 0;
    if (ok && (PyArray_DIM(dout, 0) != a.T || PyArray_DIM(dout, 1) != PyArray_DIM(a.q, 1) ||
               PyArray_DIM(out, 0) != a.T || PyArray_DIM(out, 1) != PyArray_DIM(a.q, 1) ||
               PyArray_DIM(lse, 0) != a.T || PyArray_DIM(lse, 1) != NH)) {
        PyErr_SetString(PyExc_ValueError, "dout and out must have q's shape and lse (T, n_heads)");
        ok = 0;
    }
    if (ok) {
        PyArrayObject *dq = nan_like(a.q), *dk = nan_like(a.k), *dv = nan_like(a.v); // written
        float *scratch = malloc(attention_scratch_floats(a.T, omp_get_max_threads()) * sizeof(float));
        attention_backward(F(dq), F(dk), F(dv), 0, F(dout), F(out), F(lse), F(a.q), F(a.k), F(a.v),
                           PyArray_DATA(a.offsets), a.s, scratch);
        free(scratch);
        result = Py_BuildValue("(NNN)", dq, dk, dv);
    }
    attention_release(&a);
    Py_XDECREF(dout);
    Py_XDECREF(out);
    Py_XDECREF(lse);
    return result;
}

static int weight_of(PyObject *obj, const char *dtype_name, PyArrayObject **arr, lf_weight *w) {
    if (lf_python_float_dtype(dtype_name, "for a matmul weight", &w->dtype) < 0) return -1;
    *arr = (PyArrayObject *)PyArray_FROMANY(obj, lf_npy_type(w->dtype), 2, 2,
                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (*arr == NULL) return -1;
    w->data = PyArray_DATA(*arr);
    return 0;
}

// matmul_forward(x (T, C), w (OC, C), dtype_name, bias or None) -> out (T, OC)
// matmul_backward(dout, x, w, dtype_name) -> (dx, dw, db)   [dw only computed for float32]
static PyObject *py_matmul(PyObject *self, PyObject *args, int backward) {
    (void)self;
    PyObject *a0, *a1, *a2, *a3 = Py_None;
    const char *dtype;
    if (!PyArg_ParseTuple(args, backward ? "OOOs" : "OOs|O", &a0, &a1, backward ? &a2 : (PyObject **)&dtype,
                          backward ? (PyObject **)&dtype : &a3))
        return NULL;
    PyArrayObject *x = f32(backward ? a1 : a0, 2, "x"), *dout = backward ? f32(a0, 2, "dout") : NULL,
                  *w = NULL, *bias = NULL;
    lf_weight lw;
    PyObject *result = NULL;
    if (x && (!backward || dout) && weight_of(backward ? a2 : a1, dtype, &w, &lw) == 0 &&
        (a3 == Py_None || (bias = f32(a3, 1, "bias")))) {
        int T = (int)PyArray_DIM(x, 0), C = (int)PyArray_DIM(x, 1), OC = (int)PyArray_DIM(w, 0);
        float *scratch = malloc((matmul_scratch_floats(C, OC, lw.dtype) + 1) * sizeof(float));
        if (PyArray_DIM(w, 1) != C || (dout && (PyArray_DIM(dout, 0) != T || PyArray_DIM(dout, 1) != OC))) {
            PyErr_SetString(PyExc_ValueError, "matmul shapes disagree");
        } else if (!backward) {
            npy_intp d[2] = {T, OC};
            PyArrayObject *out = (PyArrayObject *)PyArray_ZEROS(2, d, NPY_FLOAT32, 0);
            matmul_forward(F(out), F(x), lw, F(bias), T, C, OC, 0, scratch);
            result = (PyObject *)out;
        } else {
            npy_intp dwd[2] = {OC, C}, dbd[1] = {OC};
            PyArrayObject *dx = nan_like(x), *dw = (PyArrayObject *)PyArray_ZEROS(2, dwd, NPY_FLOAT32, 0),
                          *db = (PyArrayObject *)PyArray_ZEROS(1, dbd, NPY_FLOAT32, 0);
            matmul_backward(F(dx), lw.dtype == LF_F32 ? F(dw) : NULL, F(db), F(dout), F(x), lw, T, C, OC, 0,
                            scratch);
            result = Py_BuildValue("(NNN)", dx, dw, db);
        }
        free(scratch);
    }
    Py_XDECREF(x);
    Py_XDECREF(dout);
    Py_XDECREF(w);
    Py_XDECREF(bias);
    return result;
}

static PyObject *py_matmul_forward(PyObject *self, PyObject *args) { return py_matmul(self, args, 0); }
static PyObject *py_matmul_backward(PyObject *self, PyObject *args) { return py_matmul(self, args, 1); }

// layernorm(x (T, C), weight, bias, eps, dout or None) -> out, or (dx, dweight, dbias) with dout
static PyObject *py_layernorm(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *wo, *bo, *douto = Py_None;
    float eps;
    if (!PyArg_ParseTuple(args, "OOOf|O", &xo, &wo, &bo, &eps, &douto)) return NULL;
    PyArrayObject *x = f32(xo, 2, "x"), *w = f32(wo, 1, "weight"), *b = f32(bo, 1, "bias"), *dout = NULL;
    PyObject *result = NULL;
    if (x && w && b && (douto == Py_None || (dout = f32(douto, 2, "dout")))) {
        int T = (int)PyArray_DIM(x, 0), C = (int)PyArray_DIM(x, 1);
        PyArrayObject *out = zeros_like(x);
        float *stats = malloc(2 * (size_t)T * sizeof(float));
        layernorm_forward(F(out), stats, stats + T, F(x), F(w), F(b), T, C, eps);
        if (dout == NULL) {
            result = (PyObject *)out;
        } else {
            PyArrayObject *dx = zeros_like(x), *dw = zeros_like(w), *db = zeros_like(b);
            layernorm_backward(F(dx), F(dw), F(db), F(dout), F(x), F(w), stats, stats + T, T, C);
            Py_DECREF(out);
            result = Py_BuildValue("(NNN)", dx, dw, db);
        }
        free(stats);
    }
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(dout);
    return result;
}

// dropout_residual_layernorm(branch, residual, weight, bias, eps, p, key, dout or None) -> (out, sum),
// or with dout the gradients (dresidual, dbranch, dweight, dbias)
static PyObject *py_dropout_residual_layernorm(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *bro, *reso, *wo, *bo, *douto = Py_None;
    float eps, p;
    unsigned long long key;
    if (!PyArg_ParseTuple(args, "OOOOffK|O", &bro, &reso, &wo, &bo, &eps, &p, &key, &douto)) return NULL;
    if (!dropout_p_valid(p)) return NULL;
    PyArrayObject *br = f32(bro, 2, "branch"), *res = f32(reso, 2, "residual"), *w = f32(wo, 1, "weight"),
                  *b = f32(bo, 1, "bias"), *dout = NULL;
    PyObject *result = NULL;
    if (br && res && w && b && (douto == Py_None || (dout = f32(douto, 2, "dout")))) {
        int T = (int)PyArray_DIM(br, 0), C = (int)PyArray_DIM(br, 1);
        if (!PyArray_SAMESHAPE(br, res) || PyArray_DIM(w, 0) != C || PyArray_DIM(b, 0) != C ||
            (dout && !PyArray_SAMESHAPE(br, dout))) {
            PyErr_SetString(PyExc_ValueError,
                            "branch, residual (and dout) must be (T, C), weight and bias (C,)");
        } else {
            PyArrayObject *out = zeros_like(br), *sum = zeros_like(br);
            float *stats = malloc((2 * (size_t)T + 1) * sizeof(float)); // mean, rstd (+1: T may be 0)
            if (stats == NULL) {
                PyErr_NoMemory();
                Py_DECREF(out);
                Py_DECREF(sum);
            } else {
                dropout_residual_layernorm_forward(F(out), stats, stats + T, F(sum), F(br), F(res), F(w),
                                                   F(b), T, C, eps, p, key);
                if (dout == NULL) {
                    result = Py_BuildValue("(NN)", out, sum);
                } else {
                    PyArrayObject *dres = zeros_like(br), *dbr = zeros_like(br), *dw = zeros_like(w),
                                  *db = zeros_like(b);
                    dropout_residual_layernorm_backward(F(dres), F(dbr), F(dw), F(db), F(dout), F(sum), F(w),
                                                        stats, stats + T, T, C, p, key);
                    Py_DECREF(out);
                    Py_DECREF(sum);
                    result = Py_BuildValue("(NNNN)", dres, dbr, dw, db);
                }
                free(stats);
            }
        }
    }
    Py_XDECREF(br);
    Py_XDECREF(res);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(dout);
    return result;
}

// gelu(x, dout or None) -> out, or dx
static PyObject *py_gelu(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *douto = Py_None;
    if (!PyArg_ParseTuple(args, "O|O", &xo, &douto)) return NULL;
    PyArrayObject *x = f32(xo, 1, "x"), *dout = douto == Py_None ? NULL : f32(douto, 1, "dout");
    PyObject *result = NULL;
    if (x && dout && PyArray_DIM(dout, 0) != PyArray_DIM(x, 0)) {
        PyErr_Format(PyExc_ValueError, "gelu: dout has %ld values, x %ld", (long)PyArray_DIM(dout, 0),
                     (long)PyArray_DIM(x, 0));
    } else if (x && (douto == Py_None || dout)) {
        PyArrayObject *out = zeros_like(x);
        if (dout) { // in place, as the encoder calls it
            memcpy(F(out), F(dout), (size_t)PyArray_DIM(x, 0) * sizeof(float));
            gelu_backward(F(out), F(x), F(out), PyArray_DIM(x, 0), 0);
        } else {
            gelu_forward(F(out), F(x), PyArray_DIM(x, 0));
        }
        result = (PyObject *)out;
    }
    Py_XDECREF(x);
    Py_XDECREF(dout);
    return result;
}

// dropout(x, p, key) -> out
static PyObject *py_dropout(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    float p;
    unsigned long long key;
    if (!PyArg_ParseTuple(args, "OfK", &xo, &p, &key)) return NULL;
    if (!dropout_p_valid(p)) return NULL;
    PyArrayObject *x = f32(xo, 1, "x");
    if (x == NULL) return NULL;
    PyArrayObject *out = zeros_like(x);
    dropout_forward(F(out), F(x), PyArray_DIM(x, 0), p, key);
    Py_DECREF(x);
    return (PyObject *)out;
}

// dropout_bits(x, p, key, dout) -> (dropout(x), the mask's bits (uint64 words), dout * mask / (1-p),
// x + dout * mask / (1-p)): the mask drawn once (dropout_forward_bits) and applied from its bits
static PyObject *py_dropout_bits(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *douto;
    float p;
    unsigned long long key;
    if (!PyArg_ParseTuple(args, "OfKO", &xo, &p, &key, &douto)) return NULL;
    if (!dropout_p_valid(p)) return NULL;
    PyArrayObject *x = f32(xo, 1, "x"), *dout = x ? f32(douto, 1, "dout") : NULL;
    PyObject *result = NULL;
    if (dout && !PyArray_SAMESHAPE(x, dout)) {
        PyErr_SetString(PyExc_ValueError, "dropout_bits: x and dout must have one shape");
    } else if (dout) {
        npy_intp n = PyArray_DIM(x, 0), words = (n + 63) / 64;
        PyArrayObject *out = nan_like(x), *din = nan_like(x),
                      *sum = (PyArrayObject *)PyArray_NewCopy(x, NPY_CORDER),
                      *bits = (PyArrayObject *)PyArray_ZEROS(1, &words, NPY_UINT64, 0);
        if (out && din && sum && bits) {
            dropout_forward_bits(F(out), PyArray_DATA(bits), F(x), n, p, key);
            dropout_apply_bits(F(din), F(dout), PyArray_DATA(bits), n, p, 0);
            dropout_apply_bits(F(sum), F(dout), PyArray_DATA(bits), n, p, 1);
            result = Py_BuildValue("(OOOO)", out, bits, din, sum);
        }
        Py_XDECREF(out);
        Py_XDECREF(din);
        Py_XDECREF(sum);
        Py_XDECREF(bits);
    }
    Py_XDECREF(x);
    Py_XDECREF(dout);
    return result;
}

// cross_entropy(logits (B, V), labels (B,) int32 in [0, V), class_weights (V,) or None) -> the loss of
// torch.nn.CrossEntropyLoss(weight=class_weights): the weighted mean
static PyObject *py_cross_entropy(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *logits_obj, *labels_obj, *weights_obj;
    if (!PyArg_ParseTuple(args, "OOO", &logits_obj, &labels_obj, &weights_obj)) return NULL;
    PyArrayObject *z = f32(logits_obj, 2, "logits"), *w = NULL, *y = NULL;
    PyObject *out = NULL;
    if (z == NULL) return NULL;
    npy_intp B = PyArray_DIM(z, 0), V = PyArray_DIM(z, 1);
    y = (PyArrayObject *)PyArray_FROMANY(labels_obj, NPY_INT32, 1, 1,
                                         NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (y == NULL || PyArray_DIM(y, 0) != B || B < 1 || V < 1 || B > INT32_MAX || V > INT32_MAX) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError,
                     "labels must be a 1-D int32 array of %ld values for logits of shape (%ld, %ld)", (long)B,
                     (long)B, (long)V);
        goto done;
    }
    const int32_t *labels = PyArray_DATA(y);
    for (npy_intp b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= V) {
            PyErr_Format(PyExc_ValueError, "labels[%ld] = %d is outside [0, %ld)", (long)b, labels[b],
                         (long)V);
            goto done;
        }
    if (weights_obj != Py_None &&
        ((w = f32(weights_obj, 1, "class_weights")) == NULL || PyArray_DIM(w, 0) != V)) {
        if (w != NULL) PyErr_Format(PyExc_ValueError, "class_weights must have %ld values", (long)V);
        goto done;
    }
    out = PyFloat_FromDouble(crossentropy_forward_backward(NULL, F(z), labels, F(w), (int)B, (int)V));
done:
    Py_XDECREF(z);
    Py_XDECREF(y);
    Py_XDECREF(w);
    return out;
}

// op_matmul_bf16(x (T, C), w (OC, C), dtype_name, bias or None, dout (T, OC) or None, repeat=1,
//                dx0 (T, C) or None) -> (x @ w.T + b, dout @ w (+ dx0 when given) or None, best seconds
// of the forward over repeat runs): ops/matmul_bf16.c
static PyObject *py_matmul_bf16(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ox, *ow, *obias = Py_None, *odout = Py_None, *odx0 = Py_None;
    const char *dtype;
    int repeat = 1;
    if (!PyArg_ParseTuple(args, "OOs|OOiO", &ox, &ow, &dtype, &obias, &odout, &repeat, &odx0)) return NULL;
    PyArrayObject *x = f32(ox, 2, "x"), *w = NULL, *bias = NULL, *dout = NULL, *out = NULL, *dx = NULL,
                  *dx0 = NULL;
    lf_weight lw;
    matmul_bf16_weight *packed = NULL;
    PyObject *result = NULL;
    if (x == NULL || weight_of(ow, dtype, &w, &lw) < 0 ||
        (obias != Py_None && !(bias = f32(obias, 1, "bias"))) ||
        (odout != Py_None && !(dout = f32(odout, 2, "dout"))) ||
        (odx0 != Py_None && !(dx0 = f32(odx0, 2, "dx0"))))
        goto done;
    int T = (int)PyArray_DIM(x, 0), C = (int)PyArray_DIM(x, 1), OC = (int)PyArray_DIM(w, 0);
    if (PyArray_DIM(w, 1) != C || (bias && PyArray_DIM(bias, 0) != OC) ||
        (dout && (PyArray_DIM(dout, 0) != T || PyArray_DIM(dout, 1) != OC)) || repeat < 1 || OC < 1 ||
        C < 1 || (dx0 && (!dout || PyArray_DIM(dx0, 0) != T || PyArray_DIM(dx0, 1) != C))) {
        PyErr_SetString(PyExc_ValueError, "op_matmul_bf16: shapes disagree (x (T, C), w (OC, C), bias (OC,), "
                                          "dout (T, OC), dx0 (T, C) with dout) or repeat < 1");
        goto done;
    }
    npy_intp od[2] = {T, OC};
    out = (PyArrayObject *)PyArray_ZEROS(2, od, NPY_FLOAT32, 0);
    dx = dout ? (dx0 ? (PyArrayObject *)PyArray_NewCopy(dx0, NPY_CORDER) : nan_like(x)) : NULL;
    uint16_t *scratch = malloc((matmul_bf16_scratch_elems(T, C, OC) + 1) * sizeof(uint16_t));
    int rc =
        out == NULL || (dout && dx == NULL) || scratch == NULL ? lf_error(LF_ENOMEM, "out of memory") : LF_OK;
    double best = 1e30;
    Py_BEGIN_ALLOW_THREADS if (rc == LF_OK) rc = matmul_bf16_pack(&packed, lw, C, OC, bias != NULL, "w");
    for (int i = 0; i < repeat && rc == LF_OK; i++) {
        double t = omp_get_wtime();
        rc = matmul_bf16_forward(F(out), F(x), packed, F(bias), T, scratch);
        t = omp_get_wtime() - t;
        best = t < best ? t : best;
    }
    if (rc == LF_OK && dout) rc = matmul_bf16_backward(F(dx), F(dout), packed, T, dx0 != NULL, scratch);
    Py_END_ALLOW_THREADS free(scratch);
    if (rc != LF_OK)
        lf_raise_core_error();
    else
        result = Py_BuildValue("(OOd)", out, dx ? (PyObject *)dx : Py_None, best);
done:
    matmul_bf16_free(packed);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(bias);
    Py_XDECREF(dout);
    Py_XDECREF(dx0);
    Py_XDECREF(out);
    Py_XDECREF(dx);
    return result;
}

static PyMethodDef ops_methods[] = {
    {"cross_entropy", py_cross_entropy, METH_VARARGS, "torch.nn.CrossEntropyLoss(weight=w) of logits"},
    {"op_attention_forward", py_attention_forward, METH_VARARGS, "packed attention: (out, lse)"},
    {"op_attention_backward", py_attention_backward, METH_VARARGS, "packed attention grads: (dq, dk, dv)"},
    {"op_matmul_forward", py_matmul_forward, METH_VARARGS, "x @ w.T + b with f32/f16/bf16 w"},
    {"op_matmul_backward", py_matmul_backward, METH_VARARGS, "(dx, dw, db) of x @ w.T + b"},
    {"op_matmul_bf16", py_matmul_bf16, METH_VARARGS, "(x @ w.T + b, dout @ w, best s) in bf16 (oneDNN)"},
    {"op_layernorm", py_layernorm, METH_VARARGS, "layernorm forward, or its grads given dout"},
    {"op_dropout_residual_layernorm", py_dropout_residual_layernorm, METH_VARARGS,
     "LayerNorm(dropout(branch) + residual): (out, sum), or its grads given dout"},
    {"op_gelu", py_gelu, METH_VARARGS, "gelu forward, or its input grad given dout"},
    {"op_dropout", py_dropout, METH_VARARGS, "inverted dropout with a counter-based mask"},
    {"op_dropout_bits", py_dropout_bits, METH_VARARGS, "dropout with its mask kept as bits, applied again"},
    {NULL, NULL, 0, NULL},
};

int lf_bind_ops(PyObject *module) { return PyModule_AddFunctions(module, ops_methods); }
