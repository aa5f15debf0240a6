// Data parallel on the device with NCCL (lorafast/distributed.py, ddp_backend="nccl"): the kernels
// library's NCCL entry points (core/cuda_backend.h, kernels/device_nccl.cu). A communicator is a capsule
// that destroys it when it goes.
#include "python/lf_python.h"

#include "core/cuda_backend.h"
#include "core/error.h"
#include "models/model.h"

static const char *COMM_CAPSULE = "lorafast.nccl_comm";

static PyObject *nccl_error(const lf_cuda_api *api) {
    return PyErr_Format(PyExc_RuntimeError, "%s", api->last_error());
}

// nccl_open(path): libnccl.so.2 at path opened by the kernels library (once)
static PyObject *py_nccl_open(PyObject *self, PyObject *arg) {
    (void)self;
    const char *path = PyUnicode_AsUTF8(arg);
    const lf_cuda_api *api = path ? lf_python_cuda() : NULL;
    if (api == NULL) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = api->nccl_open(path);
    Py_END_ALLOW_THREADS if (rc != 0) return nccl_error(api);
    return PyLong_FromLong(api->nccl_version());
}

// nccl_unique_id() -> bytes (LF_NCCL_ID_BYTES): rank 0's, for every rank's nccl_comm
static PyObject *py_nccl_unique_id(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    const lf_cuda_api *api = lf_python_cuda();
    if (api == NULL) return NULL;
    char id[LF_NCCL_ID_BYTES];
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = api->nccl_unique_id(id);
    Py_END_ALLOW_THREADS if (rc != 0) return nccl_error(api);
    return PyBytes_FromStringAndSize(id, sizeof id);
}

static void free_comm(PyObject *capsule) {
    void *comm = PyCapsule_GetPointer(capsule, COMM_CAPSULE);
    if (comm != NULL && lf_cuda() != NULL) lf_cuda()->nccl_comm_free(comm);
}

// nccl_comm(unique_id, nranks, rank, device) -> communicator (a capsule); blocks until every rank made its
// own
static PyObject *py_nccl_comm(PyObject *self, PyObject *args) {
    (void)self;
    const char *id;
    Py_ssize_t id_len;
    int nranks, rank, device;
    if (!PyArg_ParseTuple(args, "y#iii", &id, &id_len, &nranks, &rank, &device)) return NULL;
    if (id_len != LF_NCCL_ID_BYTES)
        return PyErr_Format(PyExc_ValueError, "an NCCL unique id has %d bytes, got %zd", LF_NCCL_ID_BYTES,
                            id_len);
    if (nranks < 1 || rank < 0 || rank >= nranks || device < 0)
        return PyErr_Format(PyExc_ValueError, "NCCL rank %d of %d on cuda:%d is not a rank and a device",
                            rank, nranks, device);
    const lf_cuda_api *api = lf_python_cuda();
    if (api == NULL) return NULL;
    void *comm = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = api->nccl_comm_create(id, nranks, rank, device, &comm);
    Py_END_ALLOW_THREADS if (rc != 0) return nccl_error(api);
    PyObject *capsule = PyCapsule_New(comm, COMM_CAPSULE, free_comm);
    if (capsule == NULL) api->nccl_comm_free(comm);
    return capsule;
}

// nccl_all_reduce(model, comm, loss, timeout): in a training run of model on CUDA, its device gradients and
// loss (a float32 array of one element, replaced in place) become their mean over comm's ranks
static PyObject *py_nccl_all_reduce(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *model, *capsule;
    PyArrayObject *loss;
    double timeout;
    if (!PyArg_ParseTuple(args, "OOO!d", &model, &capsule, &PyArray_Type, &loss, &timeout)) return NULL;
    void *comm = PyCapsule_GetPointer(capsule, COMM_CAPSULE);
    if (comm == NULL) return NULL;
    if (PyArray_TYPE(loss) != NPY_FLOAT32 || PyArray_SIZE(loss) != 1 || !PyArray_ISCARRAY(loss))
        return PyErr_Format(PyExc_ValueError, "loss must be a writable float32 array of one element");
    if (!(timeout > 0)) return PyErr_Format(PyExc_ValueError, "timeout must be > 0 seconds, got %g", timeout);
    lf_model *m = lf_model_take(model, 0);
    if (m == NULL) return NULL;
    float *value = PyArray_DATA(loss);
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_model_cuda_all_reduce(m, comm, value, timeout);
    Py_END_ALLOW_THREADS lf_model_release(model);
    if (rc != LF_OK) return lf_raise_core_error();
    Py_RETURN_NONE;
}

static PyMethodDef nccl_methods[] = {
    {"nccl_open", py_nccl_open, METH_O, "Opens libnccl.so.2 at path in the kernels library: NCCL's version."},
    {"nccl_unique_id", py_nccl_unique_id, METH_NOARGS, "A new NCCL unique id (rank 0's), as bytes."},
    {"nccl_comm", py_nccl_comm, METH_VARARGS, "nccl_comm(unique_id, nranks, rank, device): a communicator."},
    {"nccl_all_reduce", py_nccl_all_reduce, METH_VARARGS,
     "nccl_all_reduce(model, comm, loss, timeout): the device gradients and loss averaged over the ranks."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_nccl(PyObject *module) { return PyModule_AddFunctions(module, nccl_methods); }
