// lorafast._C.SafetensorsFile (a memory-mapped safetensors file) and safetensors_write.
#include "python/lf_python.h"

#include <structmember.h>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"

typedef struct {
    PyObject_HEAD lf_mapped_file file;
    PyObject *path;    // str
    size_t header_len; // the data area starts at 8 + header_len
} SafetensorsFile;

static size_t data_start(const SafetensorsFile *self) { return 8 + self->header_len; }

static int file_init(SafetensorsFile *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"path", NULL};
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&", keywords, PyUnicode_FSDecoder, &path)) return -1;
    if (self->file.data != NULL || self->path != NULL) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_RuntimeError, "SafetensorsFile is already open");
        return -1;
    }
    self->path = path;
    const char *cpath = PyUnicode_AsUTF8(path);
    if (cpath == NULL) return -1;
    int code;
    Py_BEGIN_ALLOW_THREADS code = lf_map_file(cpath, &self->file);
    Py_END_ALLOW_THREADS if (code != LF_OK) {
        lf_raise_core_error();
        return -1;
    }
    if (lf_safetensors_header(&self->file, cpath, &self->header_len) != LF_OK) {
        lf_raise_core_error();
        return -1;
    }
    return 0;
}

static void file_dealloc(SafetensorsFile *self) {
    lf_unmap_file(&self->file);
    Py_XDECREF(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

// header() -> bytes: the JSON header, undecoded
static PyObject *file_header(SafetensorsFile *self, PyObject *unused) {
    (void)unused;
    return PyBytes_FromStringAndSize(self->file.data + 8, (Py_ssize_t)self->header_len);
}

// Reads a sequence of ints into a new int64 array of length n (n < 0: any length, set n).
static PyArrayObject *int64_array(PyObject *seq, const char *what, Py_ssize_t *n) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(seq, NPY_INT64, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (a == NULL) return NULL;
    if (*n >= 0 && PyArray_DIM(a, 0) != *n) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd values, got %zd", what, *n,
                     (Py_ssize_t)PyArray_DIM(a, 0));
        Py_DECREF(a);
        return NULL;
    }
    *n = PyArray_DIM(a, 0);
    return a;
}

// check_offsets(names, begins, ends, nbytes): the layout checks of io/safetensors.h
static PyObject *file_check_offsets(SafetensorsFile *self, PyObject *args) {
    PyObject *names, *begins, *ends, *sizes;
    if (!PyArg_ParseTuple(args, "O!OOO", &PyList_Type, &names, &begins, &ends, &sizes)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(names);
    PyArrayObject *b = int64_array(begins, "begins", &n), *e = NULL, *s = NULL;
    if (b != NULL) e = int64_array(ends, "ends", &n);
    if (e != NULL) s = int64_array(sizes, "nbytes", &n);
    const char **cnames = s != NULL ? PyMem_Malloc((size_t)(n ? n : 1) * sizeof *cnames) : NULL;
    int ok = cnames != NULL;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = (cnames[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(names, i))) != NULL;
    PyObject *result = NULL;
    if (ok) {
        const char *cpath = PyUnicode_AsUTF8(self->path);
        if (lf_safetensors_check_offsets(cpath, self->file.size - data_start(self), (size_t)n, cnames,
                                         PyArray_DATA(b), PyArray_DATA(e), PyArray_DATA(s)) != LF_OK)
            lf_raise_core_error();
        else
            result = Py_NewRef(Py_None);
    } else if (s != NULL && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    PyMem_Free(cnames);
    Py_XDECREF(b);
    Py_XDECREF(e);
    Py_XDECREF(s);
    return result;
}

// array(begin, end, dtype, shape) -> ndarray viewing the mapped bytes [begin, end) of the
// data area (copy-on-write: writing to it never changes the file); keeps the mapping alive.
static PyObject *file_array(SafetensorsFile *self, PyObject *args) {
    long long begin, end;
    PyArray_Descr *descr = NULL;
    PyObject *shape_obj;
    if (!PyArg_ParseTuple(args, "LLO&O", &begin, &end, PyArray_DescrConverter, &descr, &shape_obj))
        return NULL;
    Py_ssize_t ndim = -1;
    PyArrayObject *shape = int64_array(shape_obj, "shape", &ndim);
    PyObject *result = NULL;
    size_t area = self->file.size - data_start(self);
    if (shape == NULL) goto done;
    if (ndim > NPY_MAXDIMS) {
        PyErr_Format(PyExc_ValueError, "%U: %zd dimensions, at most %d", self->path, ndim, NPY_MAXDIMS);
        goto done;
    }
    const npy_intp *dims = PyArray_DATA(shape);
    long long count = 1;
    for (Py_ssize_t i = 0; i < ndim; i++) {
        if (dims[i] < 0 || (dims[i] > 0 && count > LLONG_MAX / dims[i])) {
            PyErr_Format(PyExc_ValueError, "%U: invalid shape", self->path);
            goto done;
        }
        count *= dims[i];
    }
    if (begin < 0 || end < begin || (unsigned long long)end > area ||
        (count > 0 && end - begin != count * (long long)PyDataType_ELSIZE(descr)) ||
        (count == 0 && end != begin)) {
        PyErr_Format(
            PyExc_ValueError,
            "%U: bytes [%lld, %lld) do not hold a tensor of this shape and dtype in a data area of %zu bytes",
            self->path, begin, end, area);
        goto done;
    }
    Py_INCREF(descr); // stolen by NewFromDescr
    result = PyArray_NewFromDescr(&PyArray_Type, descr, (int)ndim, (npy_intp *)dims, NULL,
                                  self->file.data + data_start(self) + begin, NPY_ARRAY_WRITEABLE, NULL);
    if (result != NULL && PyArray_SetBaseObject((PyArrayObject *)result, Py_NewRef((PyObject *)self)) < 0)
        Py_CLEAR(result);
done:
    Py_XDECREF(shape);
    Py_XDECREF(descr);
    return result;
}

static PyObject *file_get_size(SafetensorsFile *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->file.size);
}

static PyObject *file_get_data_start(SafetensorsFile *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(data_start(self));
}

static PyMethodDef file_methods[] = {
    {"header", (PyCFunction)file_header, METH_NOARGS, "The JSON header as bytes."},
    {"check_offsets", (PyCFunction)file_check_offsets, METH_VARARGS,
     "check_offsets(names, begins, ends, nbytes): offsets inside the data area, sizes match, no overlap, no "
     "hole."},
    {"array", (PyCFunction)file_array, METH_VARARGS,
     "array(begin, end, dtype, shape) -> ndarray viewing the mapped data (copy-on-write)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef file_getset[] = {
    {"size", (getter)file_get_size, NULL, "file size in bytes", NULL},
    {"data_start", (getter)file_get_data_start, NULL, "offset of the data area in the file", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef file_members[] = {
    {"path", T_OBJECT_EX, offsetof(SafetensorsFile, path), READONLY, "the file's path"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SafetensorsFileType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lorafast._C.SafetensorsFile",
    .tp_basicsize = sizeof(SafetensorsFile),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SafetensorsFile(path): a safetensors file mapped into memory, its header length validated.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)file_init,
    .tp_dealloc = (destructor)file_dealloc,
    .tp_methods = file_methods,
    .tp_getset = file_getset,
    .tp_members = file_members,
};

// safetensors_write(path, header: bytes, arrays: sequence of C-contiguous ndarrays)
static PyObject *py_safetensors_write(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path = NULL, *seq;
    const char *header;
    Py_ssize_t header_len;
    if (!PyArg_ParseTuple(args, "O&y#O", PyUnicode_FSConverter, &path, &header, &header_len, &seq))
        return NULL;
    PyObject *arrays = PySequence_Tuple(seq); // holds the arrays while the GIL is released
    Py_ssize_t n = arrays ? PyTuple_GET_SIZE(arrays) : 0;
    const void **data = arrays ? PyMem_Malloc((size_t)(n ? n : 1) * sizeof *data) : NULL;
    size_t *nbytes = data ? PyMem_Malloc((size_t)(n ? n : 1) * sizeof *nbytes) : NULL;
    PyObject *result = NULL;
    if (arrays != NULL && nbytes == NULL) PyErr_NoMemory();
    for (Py_ssize_t i = 0; nbytes != NULL && i < n; i++) {
        PyObject *a = PyTuple_GET_ITEM(arrays, i);
        if (!PyArray_Check(a) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)a)) {
            PyErr_Format(PyExc_TypeError, "%s: tensor %zd is not a C-contiguous numpy array",
                         PyBytes_AS_STRING(path), i);
            goto done;
        }
        data[i] = PyArray_DATA((PyArrayObject *)a);
        nbytes[i] = (size_t)PyArray_NBYTES((PyArrayObject *)a);
    }
    if (nbytes != NULL) {
        int code;
        const char *cpath = PyBytes_AS_STRING(path);
        Py_BEGIN_ALLOW_THREADS code =
            lf_safetensors_write(cpath, header, (size_t)header_len, (size_t)n, data, nbytes);
        Py_END_ALLOW_THREADS if (code != LF_OK) lf_raise_core_error();
        else result = Py_NewRef(Py_None);
    }
done:
    PyMem_Free(data);
    PyMem_Free(nbytes);
    Py_XDECREF(arrays);
    Py_DECREF(path);
    return result;
}

static PyMethodDef io_methods[] = {
    {"safetensors_write", py_safetensors_write, METH_VARARGS,
     "safetensors_write(path, header, arrays): writes a safetensors file atomically."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_io(PyObject *module) {
    if (PyType_Ready(&SafetensorsFileType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "SafetensorsFile", (PyObject *)&SafetensorsFileType) < 0) return -1;
    return PyModule_AddFunctions(module, io_methods);
}
