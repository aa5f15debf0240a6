// lorafast._C.Tensor: an lf_tensor seen from Python. CPU tensors share memory with NumPy
// both ways (from_numpy / numpy() copy nothing); to("cuda") / to("cpu") copy through the
// CUDA backend; astype converts float formats with core/convert.h.
#include "python/lf_python.h"

#include <string.h>

#include "core/convert.h"
#include "core/cuda_backend.h"
#include "core/error.h"
#include "core/tensor.h"

typedef struct {
    PyObject_HEAD lf_tensor t;
    PyObject *owner;  // CPU: the ndarray whose buffer t.data points into
    int device_owned; // CUDA: t.data was allocated by this tensor
} Tensor;

// NumPy storage type of each lf_dtype (bfloat16 is stored as uint16)
static const int storage_typenum[LF_DTYPE_COUNT] = {NPY_FLOAT32, NPY_FLOAT16, NPY_UINT16,
                                                    NPY_INT32,   NPY_INT64,   NPY_UINT8};

static int dtype_of_array(PyArrayObject *a, lf_dtype *dtype) {
    int typenum = PyArray_TYPE(a);
    for (int i = 0; i < LF_DTYPE_COUNT; i++) {
        if (storage_typenum[i] == typenum && i != LF_BF16) {
            *dtype = (lf_dtype)i;
            return 0;
        }
    }
    PyErr_Format(PyExc_TypeError,
                 "Tensor.from_numpy: unsupported array dtype %R (float32, float16, int32, int64, uint8; "
                 "a uint16 array with dtype='bfloat16')",
                 (PyObject *)PyArray_DESCR(a));
    return -1;
}

// The C string of a str argument, or NULL with a TypeError naming what.
static const char *str_arg(PyObject *value, const char *what) {
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, got %R", what, value);
        return NULL;
    }
    return PyUnicode_AsUTF8(value);
}

static int parse_dtype(PyObject *name, lf_dtype *dtype) {
    const char *s = str_arg(name, "dtype");
    if (s == NULL) return -1;
    return lf_dtype_from_name(s, dtype) == LF_OK ? 0 : (lf_raise_core_error(), -1);
}

static int parse_device(PyObject *name, lf_device *device) {
    const char *s = str_arg(name, "device");
    if (s == NULL) return -1;
    return lf_device_from_name(s, device) == LF_OK ? 0 : (lf_raise_core_error(), -1);
}

// A new tensor of type (the caller's class, so subclasses survive) wrapping t.
static Tensor *tensor_new_of(PyTypeObject *type, const lf_tensor *t, PyObject *owner, int device_owned) {
    Tensor *self = (Tensor *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->t = *t;
    self->owner = Py_XNewRef(owner);
    self->device_owned = device_owned;
    return self;
}

// A tensor owning a fresh CPU ndarray of dtype and shape.
static Tensor *cpu_tensor(PyTypeObject *type, lf_dtype dtype, int ndim, const int64_t *shape) {
    npy_intp dims[LF_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = (npy_intp)shape[i];
    PyObject *array = PyArray_SimpleNew(ndim, dims, storage_typenum[dtype]);
    if (array == NULL) return NULL;
    lf_tensor t;
    lf_tensor_init(&t, "tensor", dtype, LF_CPU, ndim, shape, PyArray_DATA((PyArrayObject *)array));
    Tensor *result = tensor_new_of(type, &t, array, 0);
    Py_DECREF(array);
    return result;
}

// Tensor.from_numpy(array, dtype=None): zero-copy; the tensor keeps the array alive.
static PyObject *tensor_from_numpy(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"array", "dtype", NULL};
    PyObject *obj, *dtype_name = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", keywords, &obj, &dtype_name)) return NULL;
    if (!PyArray_Check(obj))
        return PyErr_Format(PyExc_TypeError, "Tensor.from_numpy: expected a numpy array, got %R",
                            (PyObject *)Py_TYPE(obj));
    PyArrayObject *a = (PyArrayObject *)obj;
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a))
        return PyErr_Format(PyExc_ValueError,
                            "Tensor.from_numpy: the array must be C-contiguous, aligned and in native "
                            "byte order (use np.ascontiguousarray)");
    lf_dtype dtype;
    if (dtype_name == Py_None) {
        if (dtype_of_array(a, &dtype) < 0) return NULL;
    } else {
        if (parse_dtype(dtype_name, &dtype) < 0) return NULL;
        if (PyArray_TYPE(a) != storage_typenum[dtype])
            return PyErr_Format(PyExc_TypeError, "Tensor.from_numpy: dtype '%s' needs a %s array, got %R",
                                lf_dtype_name(dtype),
                                PyArray_DescrFromType(storage_typenum[dtype])->typeobj->tp_name,
                                (PyObject *)PyArray_DESCR(a));
    }
    int ndim = PyArray_NDIM(a);
    if (ndim > LF_MAX_DIMS)
        return PyErr_Format(PyExc_ValueError, "Tensor.from_numpy: %d dimensions, at most %d", ndim,
                            LF_MAX_DIMS);
    int64_t shape[LF_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        shape[i] = PyArray_DIM(a, i);
    lf_tensor t;
    if (lf_tensor_init(&t, "Tensor.from_numpy", dtype, LF_CPU, ndim, shape, PyArray_DATA(a)) != LF_OK)
        return lf_raise_core_error();
    return (PyObject *)tensor_new_of(type, &t, obj, 0);
}

// numpy() -> ndarray sharing this CPU tensor's memory (bfloat16 as uint16)
static PyObject *tensor_numpy(Tensor *self, PyObject *unused) {
    (void)unused;
    if (self->t.device != LF_CPU)
        return PyErr_Format(PyExc_ValueError, "Tensor.numpy: the tensor is on %s; call .to('cpu') first",
                            lf_device_name(self->t.device));
    npy_intp dims[LF_MAX_DIMS];
    for (int i = 0; i < self->t.ndim; i++)
        dims[i] = (npy_intp)self->t.shape[i];
    int writeable = self->owner == NULL || !PyArray_Check(self->owner) ||
                    PyArray_ISWRITEABLE((PyArrayObject *)self->owner);
    PyObject *array =
        PyArray_New(&PyArray_Type, self->t.ndim, dims, storage_typenum[self->t.dtype], NULL, self->t.data, 0,
                    NPY_ARRAY_C_CONTIGUOUS | (writeable ? NPY_ARRAY_WRITEABLE : 0), NULL);
    if (array != NULL && PyArray_SetBaseObject((PyArrayObject *)array, Py_NewRef((PyObject *)self)) < 0)
        Py_CLEAR(array);
    return array;
}

static PyObject *cuda_failure(const lf_cuda_api *cuda, const char *what, int code) {
    return PyErr_Format(PyExc_RuntimeError, "Tensor.to: %s failed: %s", what, cuda->error_string(code));
}

static PyObject *copy_to_cuda(Tensor *self) {
    const lf_cuda_api *cuda = lf_python_cuda();
    if (cuda == NULL) return NULL;
    lf_tensor t = self->t;
    t.device = LF_CUDA;
    t.data = NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS code = cuda->malloc(&t.data, t.nbytes ? t.nbytes : 1);
    if (code == 0 && t.nbytes > 0) code = cuda->memcpy_h2d(t.data, self->t.data, t.nbytes);
    Py_END_ALLOW_THREADS if (code != 0) {
        if (t.data != NULL) cuda->free(t.data);
        return cuda_failure(cuda, "copy to the GPU", code);
    }
    Tensor *result = tensor_new_of(Py_TYPE(self), &t, NULL, 1);
    if (result == NULL) cuda->free(t.data);
    return (PyObject *)result;
}

static PyObject *copy_to_cpu(Tensor *self) {
    const lf_cuda_api *cuda = lf_python_cuda();
    if (cuda == NULL) return NULL;
    Tensor *result = cpu_tensor(Py_TYPE(self), self->t.dtype, self->t.ndim, self->t.shape);
    if (result == NULL || self->t.nbytes == 0) return (PyObject *)result;
    int code;
    Py_BEGIN_ALLOW_THREADS code = cuda->memcpy_d2h(result->t.data, self->t.data, self->t.nbytes);
    Py_END_ALLOW_THREADS if (code != 0) {
        Py_DECREF(result);
        return cuda_failure(cuda, "copy from the GPU", code);
    }
    return (PyObject *)result;
}

// to(device) -> this tensor when already there, else a copy on device
static PyObject *tensor_to(Tensor *self, PyObject *device_name) {
    lf_device device;
    if (parse_device(device_name, &device) < 0) return NULL;
    if (device == self->t.device) return Py_NewRef((PyObject *)self);
    return device == LF_CUDA ? copy_to_cuda(self) : copy_to_cpu(self);
}

// dst = src converted (same numel), through float32 when neither is float32: scratch then
// holds numel floats
static int convert_tensor(const lf_tensor *src, lf_tensor *dst, float *scratch) {
    if (dst->dtype == LF_F32) return lf_convert_to_f32(src->data, src->dtype, dst->data, src->numel);
    const float *f32 = src->data;
    if (src->dtype != LF_F32) {
        int code = lf_convert_to_f32(src->data, src->dtype, scratch, src->numel);
        if (code != LF_OK) return code;
        f32 = scratch;
    }
    return lf_convert_from_f32(f32, dst->dtype, dst->data, src->numel);
}

// astype(dtype) -> a CPU tensor converted to float32, float16 or bfloat16 (RNE)
static PyObject *tensor_astype(Tensor *self, PyObject *dtype_name) {
    lf_dtype dtype;
    if (parse_dtype(dtype_name, &dtype) < 0) return NULL;
    if (self->t.device != LF_CPU)
        return PyErr_Format(PyExc_ValueError, "Tensor.astype: the tensor is on cuda; call .to('cpu') first");
    if (dtype == self->t.dtype) return Py_NewRef((PyObject *)self);
    if (dtype != LF_F32 && dtype != LF_F16 && dtype != LF_BF16)
        return PyErr_Format(PyExc_ValueError,
                            "Tensor.astype: can convert to float32, float16 or bfloat16, not %s",
                            lf_dtype_name(dtype));
    Tensor *result = cpu_tensor(Py_TYPE(self), dtype, self->t.ndim, self->t.shape);
    if (result == NULL) return NULL;
    float *scratch = NULL;
    if (dtype != LF_F32 && self->t.dtype != LF_F32 &&
        (scratch = PyMem_RawMalloc(self->t.numel * sizeof(float) + 1)) == NULL) {
        Py_DECREF(result);
        return PyErr_NoMemory();
    }
    int code;
    Py_BEGIN_ALLOW_THREADS code = convert_tensor(&self->t, &result->t, scratch);
    Py_END_ALLOW_THREADS PyMem_RawFree(scratch);
    if (code != LF_OK) {
        Py_DECREF(result);
        return lf_raise_core_error();
    }
    return (PyObject *)result;
}

static void tensor_dealloc(Tensor *self) {
    if (self->device_owned && lf_cuda() != NULL) lf_cuda()->free(self->t.data);
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *tensor_get_shape(Tensor *self, void *closure) {
    (void)closure;
    PyObject *shape = PyTuple_New(self->t.ndim);
    for (int i = 0; shape != NULL && i < self->t.ndim; i++)
        PyTuple_SET_ITEM(shape, i, PyLong_FromLongLong(self->t.shape[i]));
    return shape;
}

static PyObject *tensor_get_dtype(Tensor *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(lf_dtype_name(self->t.dtype));
}

static PyObject *tensor_get_device(Tensor *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(lf_device_name(self->t.device));
}

static PyObject *tensor_get_nbytes(Tensor *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->t.nbytes);
}

static PyObject *tensor_get_ndim(Tensor *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->t.ndim);
}

static PyObject *tensor_repr(Tensor *self) {
    PyObject *shape = tensor_get_shape(self, NULL);
    if (shape == NULL) return NULL;
    PyObject *r = PyUnicode_FromFormat("Tensor(shape=%R, dtype=%s, device=%s)", shape,
                                       lf_dtype_name(self->t.dtype), lf_device_name(self->t.device));
    Py_DECREF(shape);
    return r;
}

static PyMethodDef tensor_methods[] = {
    {"from_numpy", (PyCFunction)(void (*)(void))tensor_from_numpy, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "from_numpy(array, dtype=None): a CPU tensor sharing the array's memory (dtype='bfloat16' for a uint16 "
     "array)."},
    {"numpy", (PyCFunction)tensor_numpy, METH_NOARGS,
     "An ndarray sharing this CPU tensor's memory (bfloat16 as uint16)."},
    {"to", (PyCFunction)tensor_to, METH_O,
     "to('cpu' | 'cuda'): this tensor on that device (a copy when it moves)."},
    {"astype", (PyCFunction)tensor_astype, METH_O,
     "astype('float32' | 'float16' | 'bfloat16'): a converted copy."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tensor_getset[] = {
    {"shape", (getter)tensor_get_shape, NULL, "tuple of extents", NULL},
    {"dtype", (getter)tensor_get_dtype, NULL, "dtype name", NULL},
    {"device", (getter)tensor_get_device, NULL, "'cpu' or 'cuda'", NULL},
    {"nbytes", (getter)tensor_get_nbytes, NULL, "bytes of storage", NULL},
    {"ndim", (getter)tensor_get_ndim, NULL, "number of dimensions", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TensorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lorafast._C.Tensor",
    .tp_basicsize = sizeof(Tensor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A tensor of the C core; make one with Tensor.from_numpy(array).",
    .tp_dealloc = (destructor)tensor_dealloc,
    .tp_repr = (reprfunc)tensor_repr,
    .tp_methods = tensor_methods,
    .tp_getset = tensor_getset,
};

PyObject *lf_tensor_wrap(const lf_tensor *t, PyObject *owner) {
    return (PyObject *)tensor_new_of(&TensorType, t, owner, 0);
}

int lf_bind_tensor(PyObject *module) {
    if (PyType_Ready(&TensorType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Tensor", (PyObject *)&TensorType);
}
