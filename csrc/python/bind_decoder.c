// The decoder's op families (RMSNorm, RoPE, SwiGLU) exposed one by one for parity tests,
// and the decoder model entry points.
#include "python/lf_python.h"

#include "ops/random.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/silu_mul.h"

// A C-contiguous float32 array of ndim dimensions, or NULL with a ValueError naming `name`.
static PyArrayObject *f32_array(PyObject *obj, int ndim, const char *name) {
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_FLOAT32 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj) || PyArray_NDIM((PyArrayObject *)obj) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous float32 array with %d dimensions", name,
                     ndim);
        return NULL;
    }
    return (PyArrayObject *)obj;
}

static PyObject *new_like(PyArrayObject *a) {
    return PyArray_ZEROS(PyArray_NDIM(a), PyArray_DIMS(a), NPY_FLOAT32, 0);
}

static float *data(PyObject *a) { return (float *)PyArray_DATA((PyArrayObject *)a); }

// rmsnorm_forward(x (N, C), weight (C), eps) -> (out (N, C), rstd (N))
static PyObject *py_rmsnorm_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *wo;
    float eps;
    if (!PyArg_ParseTuple(args, "OOf", &xo, &wo, &eps)) return NULL;
    PyArrayObject *x = f32_array(xo, 2, "x"), *w = x ? f32_array(wo, 1, "weight") : NULL;
    if (w == NULL) return NULL;
    int N = (int)PyArray_DIM(x, 0), C = (int)PyArray_DIM(x, 1);
    if (PyArray_DIM(w, 0) != C)
        return PyErr_Format(PyExc_ValueError, "weight has %d values, x has %d columns",
                            (int)PyArray_DIM(w, 0), C);
    npy_intp n = N;
    PyObject *out = new_like(x), *rstd = PyArray_ZEROS(1, &n, NPY_FLOAT32, 0);
    Py_BEGIN_ALLOW_THREADS rmsnorm_forward(data(out), data(rstd), data(xo), data(wo), N, C, eps);
    Py_END_ALLOW_THREADS return Py_BuildValue("(NN)", out, rstd);
}

// rmsnorm_backward(dout (N, C), x (N, C), weight (C), rstd (N)) -> (dx, dweight)
static PyObject *py_rmsnorm_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dyo, *xo, *wo, *ro;
    if (!PyArg_ParseTuple(args, "OOOO", &dyo, &xo, &wo, &ro)) return NULL;
    PyArrayObject *dy = f32_array(dyo, 2, "dout"), *x = dy ? f32_array(xo, 2, "x") : NULL;
    PyArrayObject *w = x ? f32_array(wo, 1, "weight") : NULL, *r = w ? f32_array(ro, 1, "rstd") : NULL;
    if (r == NULL) return NULL;
    int N = (int)PyArray_DIM(x, 0), C = (int)PyArray_DIM(x, 1);
    if (PyArray_DIM(dy, 0) != N || PyArray_DIM(dy, 1) != C || PyArray_DIM(w, 0) != C ||
        PyArray_DIM(r, 0) != N)
        return PyErr_Format(PyExc_ValueError,
                            "rmsnorm_backward: dout, x (N, C), weight (C), rstd (N) disagree");
    PyObject *dx = new_like(x), *dw = new_like(w);
    Py_BEGIN_ALLOW_THREADS rmsnorm_backward(data(dx), data(dw), data(dyo), data(xo), data(wo), data(ro), N,
                                            C);
    Py_END_ALLOW_THREADS return Py_BuildValue("(NN)", dx, dw);
}

// rope(x (T, H, D), positions (T) int32, theta, backward) -> rotated copy of x
static PyObject *py_rope(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *po;
    float theta;
    int backward;
    if (!PyArg_ParseTuple(args, "OOfp", &xo, &po, &theta, &backward)) return NULL;
    PyArrayObject *x = f32_array(xo, 3, "x");
    if (x == NULL) return NULL;
    int T = (int)PyArray_DIM(x, 0), H = (int)PyArray_DIM(x, 1), D = (int)PyArray_DIM(x, 2);
    if (!PyArray_Check(po) || PyArray_TYPE((PyArrayObject *)po) != NPY_INT32 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)po) || PyArray_NDIM((PyArrayObject *)po) != 1 ||
        PyArray_DIM((PyArrayObject *)po, 0) != T)
        return PyErr_Format(PyExc_ValueError, "positions must be a contiguous int32 array of %d values", T);
    if (D % 2 != 0) return PyErr_Format(PyExc_ValueError, "head size must be even, got %d", D);
    if (!(theta > 0.0f)) return PyErr_Format(PyExc_ValueError, "rope_theta must be > 0, got %g", theta);
    PyObject *out = PyArray_NewCopy(x, NPY_CORDER);
    if (out == NULL) return NULL;
    float *tables = PyMem_Malloc(sizeof(float) * (size_t)T * (size_t)D + 1);
    if (tables == NULL) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    const int *pos = PyArray_DATA((PyArrayObject *)po);
    Py_BEGIN_ALLOW_THREADS float *cos = tables, *sin = tables + (long)T * (D / 2);
    rope_tables(cos, sin, pos, T, D, theta);
    if (backward)
        rope_backward(data(out), cos, sin, T, H, D);
    else
        rope_forward(data(out), cos, sin, T, H, D);
    Py_END_ALLOW_THREADS PyMem_Free(tables);
    return out;
}

// silu_mul_forward(gate, up) -> silu(gate) * up; both of one shape
static PyObject *py_silu_mul_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *go, *uo;
    if (!PyArg_ParseTuple(args, "OO", &go, &uo)) return NULL;
    PyArrayObject *g = f32_array(go, 2, "gate"), *u = g ? f32_array(uo, 2, "up") : NULL;
    if (u == NULL) return NULL;
    if (PyArray_SIZE(g) != PyArray_SIZE(u) || PyArray_DIM(g, 0) != PyArray_DIM(u, 0))
        return PyErr_Format(PyExc_ValueError, "gate and up must have one shape");
    PyObject *out = new_like(g);
    Py_BEGIN_ALLOW_THREADS silu_mul_forward(data(out), data(go), data(uo), PyArray_SIZE(g));
    Py_END_ALLOW_THREADS return out;
}

// silu_mul_backward(dout, gate, up) -> (dgate, dup)
static PyObject *py_silu_mul_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dyo, *go, *uo;
    if (!PyArg_ParseTuple(args, "OOO", &dyo, &go, &uo)) return NULL;
    PyArrayObject *dy = f32_array(dyo, 2, "dout"), *g = dy ? f32_array(go, 2, "gate") : NULL;
    PyArrayObject *u = g ? f32_array(uo, 2, "up") : NULL;
    if (u == NULL) return NULL;
    if (!PyArray_SAMESHAPE(dy, g) || !PyArray_SAMESHAPE(g, u))
        return PyErr_Format(PyExc_ValueError, "dout, gate and up must have one shape");
    PyObject *dg = new_like(g), *du = new_like(u);
    Py_BEGIN_ALLOW_THREADS silu_mul_backward(data(dg), data(du), data(dyo), data(go), data(uo),
                                             PyArray_SIZE(g));
    Py_END_ALLOW_THREADS return Py_BuildValue("(NN)", dg, du);
}

// random_normal_fill(array, mean, std, seed, stream): fills a C-contiguous float32, float16 or
// uint16 (bfloat16 bits) array in place, in parallel; the values depend on (seed, stream) only
static PyObject *py_random_normal_fill(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *obj;
    float mean, std;
    unsigned long long seed, stream;
    if (!PyArg_ParseTuple(args, "OffKK", &obj, &mean, &std, &seed, &stream)) return NULL;
    PyArrayObject *a = (PyArrayObject *)obj;
    if (!PyArray_Check(obj) || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISWRITEABLE(a))
        return PyErr_Format(PyExc_ValueError,
                            "random_normal_fill: array must be a writeable C-contiguous array");
    lf_dtype dtype;
    switch (PyArray_TYPE(a)) {
    case NPY_FLOAT32:
        dtype = LF_F32;
        break;
    case NPY_FLOAT16:
        dtype = LF_F16;
        break;
    case NPY_UINT16:
        dtype = LF_BF16;
        break;
    default:
        return PyErr_Format(PyExc_ValueError,
                            "random_normal_fill: dtype must be float32, float16 or uint16 (bfloat16 bits)");
    }
    if (!(std >= 0.0f))
        return PyErr_Format(PyExc_ValueError, "random_normal_fill: std must be >= 0, got %g", std);
    void *data = PyArray_DATA(a);
    int64_t n = PyArray_SIZE(a);
    Py_BEGIN_ALLOW_THREADS random_normal_fill_dtype(data, dtype, n, mean, std, lf_stream_key(seed, stream));
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyMethodDef decoder_methods[] = {
    {"random_normal_fill", py_random_normal_fill, METH_VARARGS,
     "Fills a float32/float16/bfloat16-bits array with normal(mean, std) values from (seed, stream)."},
    {"rmsnorm_forward", py_rmsnorm_forward, METH_VARARGS, "RMSNorm: (x, weight, eps) -> (out, rstd)."},
    {"rmsnorm_backward", py_rmsnorm_backward, METH_VARARGS, "(dout, x, weight, rstd) -> (dx, dweight)."},
    {"rope", py_rope, METH_VARARGS, "RoPE: (x (T,H,D), positions, theta, backward) -> rotated x."},
    {"silu_mul_forward", py_silu_mul_forward, METH_VARARGS, "SwiGLU: (gate, up) -> silu(gate) * up."},
    {"silu_mul_backward", py_silu_mul_backward, METH_VARARGS, "(dout, gate, up) -> (dgate, dup)."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_decoder(PyObject *module) { return PyModule_AddFunctions(module, decoder_methods); }
