// Build facts and the CUDA backend switch.
#include "python/lf_python.h"

#include <omp.h>

#include "core/cuda_backend.h"
#include "core/error.h"
#include "ops/matmul_bf16.h"

static PyObject *py_build_info(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    char reason[256], version[128], isa[64];
    int bf16 = matmul_bf16_cpu_support(reason, sizeof reason);
    matmul_bf16_library(version, sizeof version, isa, sizeof isa);
    return Py_BuildValue("{s:s,s:i,s:s,s:s,s:O,s:s}", "compiler", "gcc " __VERSION__, "openmp_threads",
                         omp_get_max_threads(), "onednn", version, "onednn_isa", isa, "cpu_bf16",
                         bf16 ? Py_True : Py_False, "cpu_bf16_reason", reason);
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1) return PyErr_Format(PyExc_ValueError, "num_threads must be >= 1, got %ld", n);
    omp_set_num_threads((int)n);
    Py_RETURN_NONE;
}

// cuda_load(path or None) -> (available: bool, device_name or reason: str)
static PyObject *py_cuda_load(PyObject *self, PyObject *arg) {
    (void)self;
    const char *path = NULL;
    if (arg != Py_None && (path = PyUnicode_AsUTF8(arg)) == NULL) return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS code = lf_cuda_load(path);
    Py_END_ALLOW_THREADS if (code != LF_OK) {
        lf_error_clear();
        return Py_BuildValue("(Os)", Py_False, lf_cuda_unavailable_reason());
    }
    char name[256] = "";
    lf_cuda()->device_name(0, name, sizeof name);
    return Py_BuildValue("(Os)", Py_True, name);
}

// cuda_driver() -> (present: bool, "" or the reason CUDA is unavailable without it)
static PyObject *py_cuda_driver(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    int code;
    Py_BEGIN_ALLOW_THREADS code = lf_cuda_check_driver();
    Py_END_ALLOW_THREADS if (code == LF_OK) return Py_BuildValue("(Os)", Py_True, "");
    lf_error_clear();
    return Py_BuildValue("(Os)", Py_False, lf_cuda_unavailable_reason());
}

// cuda_set_tf32(on: bool): the CUDA f32 products in TF32 (on) or full f32 from now on; CUDA must be available
static PyObject *py_cuda_set_tf32(PyObject *self, PyObject *arg) {
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    const lf_cuda_api *cuda = lf_python_cuda();
    if (cuda == NULL) return NULL;
    cuda->set_tf32(on);
    Py_RETURN_NONE;
}

const lf_cuda_api *lf_python_cuda(void) {
    if (lf_cuda() != NULL) return lf_cuda();
    PyObject *backend = PyImport_ImportModule("lorafast._backend");
    PyObject *status = backend ? PyObject_CallMethod(backend, "cuda_status", NULL) : NULL;
    Py_XDECREF(backend);
    if (status == NULL) return NULL;
    Py_DECREF(status);
    if (lf_cuda() == NULL)
        PyErr_Format(PyExc_RuntimeError, "CUDA unavailable: %s", lf_cuda_unavailable_reason());
    return lf_cuda();
}

static PyMethodDef core_methods[] = {
    {"build_info", py_build_info, METH_NOARGS, "Compiler, OpenMP and oneDNN facts of the C core."},
    {"set_num_threads", py_set_num_threads, METH_O, "Sets the OpenMP thread count."},
    {"cuda_load", py_cuda_load, METH_O, "Opens the CUDA kernels library: (available, name or reason)."},
    {"cuda_driver", py_cuda_driver, METH_NOARGS, "Whether the NVIDIA driver opens: (present, reason)."},
    {"cuda_set_tf32", py_cuda_set_tf32, METH_O, "CUDA f32 matrix products in TF32 (True) or full f32."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_core(PyObject *module) { return PyModule_AddFunctions(module, core_methods); }
