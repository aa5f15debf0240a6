// lorafast._C: the module object. Binding files add their functions through lf_bind_*.
#define LF_MODULE_MAIN
#include "python/lf_python.h"

#include "core/error.h"

PyObject *lf_raise_core_error(void) {
    PyObject *type = PyExc_ValueError;
    switch (lf_error_code()) {
    case LF_EIO:
        type = PyExc_OSError;
        break;
    case LF_ENOMEM:
        type = PyExc_MemoryError;
        break;
    case LF_ECUDA:
        type = PyExc_RuntimeError;
        break;
    case LF_EINTR:
        type = PyExc_KeyboardInterrupt;
        break;
    default:
        break;
    }
    PyErr_SetString(type, lf_error_message());
    lf_error_clear();
    return NULL;
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "lorafast._C", "lorafast's C core", -1, NULL, NULL, NULL, NULL, NULL,
};

typedef int (*bind_fn)(PyObject *);

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    static const bind_fn binders[] = {
        lf_bind_core, lf_bind_io,    lf_bind_convert,    lf_bind_decoder, lf_bind_model,
        lf_bind_ops,  lf_bind_train, lf_bind_tokenizers, lf_bind_nccl,
    };
    for (size_t i = 0; i < sizeof binders / sizeof binders[0]; i++) {
        if (binders[i](module) < 0) {
            Py_DECREF(module);
            return NULL;
        }
    }
    return module;
}
