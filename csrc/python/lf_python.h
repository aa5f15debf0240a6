// Shared header of the CPython binding (csrc/python/). Every binding file includes this
// one; module.c defines LF_MODULE_MAIN so the NumPy C API table is defined exactly once.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL lorafast_ARRAY_API
#ifndef LF_MODULE_MAIN
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

// Raises the C core's pending error (core/error.h) as the matching Python exception and
// returns NULL.
PyObject *lf_raise_core_error(void);

// The CUDA backend, opened on first use through lorafast._backend.cuda_status() (which finds
// the kernels library and cuBLAS); NULL with a RuntimeError saying why CUDA is unavailable.
struct lf_cuda_api;
const struct lf_cuda_api *lf_python_cuda(void);

// A new lorafast._C.Tensor for t; owner (may be NULL) is kept alive while the tensor lives.
struct lf_tensor;
PyObject *lf_tensor_wrap(const struct lf_tensor *t, PyObject *owner);

// Each binding file adds its functions and types to the module; module.c calls them all.
int lf_bind_core(PyObject *module);
int lf_bind_tensor(PyObject *module);
int lf_bind_io(PyObject *module);
int lf_bind_arena(PyObject *module);
int lf_bind_decoder(PyObject *module);
int lf_bind_model(PyObject *module);
int lf_bind_ops(PyObject *module);

// The C model of a lorafast._C.Model (bind_model.c), taken for this thread until
// lf_model_release(obj) (training: for a training run, which other threads are refused), or NULL
// with a TypeError (not a Model) or a RuntimeError (another thread trains it).
struct lf_model;
struct lf_model *lf_model_take(PyObject *obj, int training);
void lf_model_release(PyObject *obj);
int lf_bind_train(PyObject *module);
int lf_bind_tokenizers(PyObject *module);
