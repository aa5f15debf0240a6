// lorafast._C.Arena: an arena (core/arena.h) from Python, handing out tensors that keep it alive.
#include "python/lf_python.h"

#include "core/arena.h"
#include "core/cuda_backend.h"
#include "core/error.h"

typedef struct {
    PyObject_HEAD lf_arena arena;
} Arena;

// Arena(capacity, device="cpu")
static int arena_init(Arena *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"capacity", "device", NULL};
    long long capacity;
    const char *device_name = "cpu";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L|s", keywords, &capacity, &device_name)) return -1;
    if (self->arena.block != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Arena is already initialised");
        return -1;
    }
    lf_device device;
    if (lf_device_from_name(device_name, &device) != LF_OK) {
        lf_raise_core_error();
        return -1;
    }
    if (capacity < 0) {
        PyErr_Format(PyExc_ValueError, "Arena: capacity must be >= 0 bytes, got %lld", capacity);
        return -1;
    }
    if (device == LF_CUDA && lf_python_cuda() == NULL) return -1;
    if (lf_arena_create(&self->arena, device, (size_t)capacity) != LF_OK) {
        lf_raise_core_error();
        return -1;
    }
    return 0;
}

static void arena_dealloc(Arena *self) {
    lf_arena_destroy(&self->arena);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

// tensor(shape, dtype="float32") -> Tensor whose storage is the arena's next piece
static PyObject *arena_tensor(Arena *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"shape", "dtype", NULL};
    PyObject *shape_obj;
    const char *dtype_name = "float32";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|s", keywords, &shape_obj, &dtype_name)) return NULL;
    lf_dtype dtype;
    if (lf_dtype_from_name(dtype_name, &dtype) != LF_OK) return lf_raise_core_error();
    PyObject *seq = PySequence_Fast(shape_obj, "Arena.tensor: shape must be a sequence of ints");
    if (seq == NULL) return NULL;
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(seq);
    int64_t shape[LF_MAX_DIMS];
    for (Py_ssize_t i = 0; i < ndim && i < LF_MAX_DIMS; i++) {
        shape[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (shape[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    if (self->arena.block == NULL) return PyErr_Format(PyExc_RuntimeError, "Arena is not initialised");
    lf_tensor t;
    if (lf_arena_tensor(&self->arena, &t, "Arena.tensor", dtype,
                        (int)(ndim > LF_MAX_DIMS ? LF_MAX_DIMS + 1 : ndim), shape) != LF_OK)
        return lf_raise_core_error();
    return lf_tensor_wrap(&t, (PyObject *)self);
}

// reset(): hands the whole arena out again; tensors handed out before now alias new ones
static PyObject *arena_reset(Arena *self, PyObject *unused) {
    (void)unused;
    lf_arena_reset(&self->arena);
    Py_RETURN_NONE;
}

static PyObject *arena_get_capacity(Arena *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->arena.capacity);
}

static PyObject *arena_get_used(Arena *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->arena.used);
}

static PyObject *arena_get_device(Arena *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(lf_device_name(self->arena.device));
}

static PyMethodDef arena_methods[] = {
    {"tensor", (PyCFunction)(void (*)(void))arena_tensor, METH_VARARGS | METH_KEYWORDS,
     "tensor(shape, dtype='float32'): a tensor carved from the arena (64-byte aligned)."},
    {"reset", (PyCFunction)arena_reset, METH_NOARGS, "Hands the whole arena out again."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef arena_getset[] = {
    {"capacity", (getter)arena_get_capacity, NULL, "bytes", NULL},
    {"used", (getter)arena_get_used, NULL, "bytes handed out (each piece rounded up to 64)", NULL},
    {"device", (getter)arena_get_device, NULL, "'cpu' or 'cuda'", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ArenaType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lorafast._C.Arena",
    .tp_basicsize = sizeof(Arena),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc =
        "Arena(capacity, device='cpu'): one block, allocated once (zero-filled on the cpu), carved into "
        "tensors.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)arena_init,
    .tp_dealloc = (destructor)arena_dealloc,
    .tp_methods = arena_methods,
    .tp_getset = arena_getset,
};

int lf_bind_arena(PyObject *module) {
    if (PyType_Ready(&ArenaType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Arena", (PyObject *)&ArenaType);
}
