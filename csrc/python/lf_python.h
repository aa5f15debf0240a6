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

// Each binding file adds its functions and types to the module; module.c calls them all.
int lf_bind_core(PyObject *module);
int lf_bind_tokenizers(PyObject *module);
