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

#include "core/dtype.h"

// Raises the C core's pending error (core/error.h) as the matching Python exception and
// returns NULL.
PyObject *lf_raise_core_error(void);

// The CUDA backend, opened on first use through lorafast._backend.cuda_status() (which finds
// the kernels library and cuBLAS); NULL with a RuntimeError saying why CUDA is unavailable.
struct lf_cuda_api;
const struct lf_cuda_api *lf_python_cuda(void);

// The NumPy type an array of dtype is stored in (bfloat16 as uint16) (bind_convert.c).
int lf_npy_type(lf_dtype dtype);
// *dtype = the float dtype named name (float32, float16 or bfloat16); else -1 with a ValueError
// "dtype '<name>' is not supported <where> (...)".
int lf_python_float_dtype(const char *name, const char *where, lf_dtype *dtype);

// Each binding file adds its functions and types to the module; module.c calls them all.
int lf_bind_core(PyObject *module);
int lf_bind_io(PyObject *module);
int lf_bind_convert(PyObject *module);
int lf_bind_decoder(PyObject *module);
int lf_bind_model(PyObject *module);
int lf_bind_ops(PyObject *module);
int lf_bind_nccl(PyObject *module);

// The C model of a lorafast._C.Model (bind_model.c), taken for this thread until
// lf_model_release(obj) (training: for a training run, which other threads are refused), or NULL
// with a TypeError (not a Model) or a RuntimeError (another thread trains it).
struct lf_model;
struct lf_model *lf_model_take(PyObject *obj, int training);
void lf_model_release(PyObject *obj);
int lf_bind_train(PyObject *module);
int lf_bind_tokenizers(PyObject *module);
