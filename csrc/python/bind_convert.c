// lf_dtype seen from NumPy (the array type each dtype is stored in, float dtype names) and
// lorafast._C.convert: float-format conversion of whole arrays with core/convert.h.
#include "python/lf_python.h"

#include <string.h>

#include "core/convert.h"
#include "core/error.h"

// NumPy storage type of each lf_dtype (bfloat16 is stored as uint16)
static const int storage_typenum[LF_DTYPE_COUNT] = {NPY_FLOAT32, NPY_FLOAT16, NPY_UINT16,
                                                    NPY_INT32,   NPY_INT64,   NPY_UINT8};

int lf_npy_type(lf_dtype dtype) { return storage_typenum[dtype]; }

int lf_python_float_dtype(const char *name, const char *where, lf_dtype *dtype) {
    if (lf_dtype_from_name(name, dtype) == LF_OK && lf_dtype_is_float(*dtype)) return 0;
    lf_error_clear();
    PyErr_Format(PyExc_ValueError, "dtype '%s' is not supported %s (float32, bfloat16 or float16)", name,
                 where);
    return -1;
}

// The dtype of an array whose type says it (every lf_dtype but bfloat16); -1 with a TypeError.
static int dtype_of_array(PyArrayObject *a, lf_dtype *dtype) {
    int typenum = PyArray_TYPE(a);
    for (int i = 0; i < LF_DTYPE_COUNT; i++) {
        if (storage_typenum[i] == typenum && i != LF_BF16) {
            *dtype = (lf_dtype)i;
            return 0;
        }
    }
    PyErr_Format(PyExc_TypeError,
                 "convert: unsupported array dtype %R (float32, float16, int32, int64, uint8; "
                 "a uint16 array with dtype='bfloat16')",
                 (PyObject *)PyArray_DESCR(a));
    return -1;
}

// dst = src (n elements) converted, through scratch (n floats, or NULL when src or dst is f32)
static int convert_array(const void *src, lf_dtype src_dtype, void *dst, lf_dtype dst_dtype, size_t n,
                         float *scratch) {
    if (src_dtype == dst_dtype) {
        memcpy(dst, src, n * lf_dtype_size(src_dtype));
        return LF_OK;
    }
    if (dst_dtype == LF_F32) return lf_convert_to_f32(src, src_dtype, dst, n);
    if (src_dtype == LF_F32) return lf_convert_from_f32(src, dst_dtype, dst, n);
    int code = lf_convert_to_f32(src, src_dtype, scratch, n);
    return code != LF_OK ? code : lf_convert_from_f32(scratch, dst_dtype, dst, n);
}

// convert(array, src_dtype or None, dst_dtype) -> a new array of dst_dtype (float32, float16 or
// bfloat16 as uint16), same shape; src_dtype None: the array's own type
static PyObject *py_convert(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *obj;
    const char *src_name, *dst_name;
    if (!PyArg_ParseTuple(args, "Ozs", &obj, &src_name, &dst_name)) return NULL;
    if (!PyArray_Check(obj))
        return PyErr_Format(PyExc_TypeError, "convert: expected a numpy array, got %R",
                            (PyObject *)Py_TYPE(obj));
    PyArrayObject *a = (PyArrayObject *)obj;
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a))
        return PyErr_Format(PyExc_ValueError,
                            "convert: the array must be C-contiguous, aligned and in native "
                            "byte order (use np.ascontiguousarray)");
    lf_dtype src, dst;
    if (src_name == NULL) {
        if (dtype_of_array(a, &src) < 0) return NULL;
    } else {
        if (lf_dtype_from_name(src_name, &src) != LF_OK) return lf_raise_core_error();
        if (PyArray_TYPE(a) != storage_typenum[src])
            return PyErr_Format(PyExc_TypeError, "convert: dtype '%s' needs a %s array, got %R", src_name,
                                PyArray_DescrFromType(storage_typenum[src])->typeobj->tp_name,
                                (PyObject *)PyArray_DESCR(a));
    }
    if (lf_dtype_from_name(dst_name, &dst) != LF_OK) return lf_raise_core_error();
    if (!lf_dtype_is_float(dst))
        return PyErr_Format(PyExc_ValueError, "convert: can convert to float32, float16 or bfloat16, not %s",
                            dst_name);
    PyObject *out = PyArray_SimpleNew(PyArray_NDIM(a), PyArray_DIMS(a), storage_typenum[dst]);
    size_t n = (size_t)PyArray_SIZE(a);
    if (out == NULL || n == 0) return out;
    float *scratch = NULL;
    if (src != dst && src != LF_F32 && dst != LF_F32 &&
        (scratch = PyMem_RawMalloc(n * sizeof(float))) == NULL) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    const void *from = PyArray_DATA(a);
    void *to = PyArray_DATA((PyArrayObject *)out);
    int code;
    Py_BEGIN_ALLOW_THREADS code = convert_array(from, src, to, dst, n, scratch);
    Py_END_ALLOW_THREADS PyMem_RawFree(scratch);
    if (code != LF_OK) {
        Py_DECREF(out);
        return lf_raise_core_error();
    }
    return out;
}

static PyMethodDef convert_methods[] = {
    {"convert", py_convert, METH_VARARGS,
     "convert(array, src_dtype or None, dst_dtype): a new array converted to float32, float16 or bfloat16 "
     "(uint16 bits), round-to-nearest-even."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_convert(PyObject *module) { return PyModule_AddFunctions(module, convert_methods); }
