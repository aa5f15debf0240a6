// lorafast._C.Model: the C model (models/model.h) as a Python type. Python builds it from a
// config dict, hands it the frozen weights as numpy arrays (kept alive here), and reads and
// writes trainable parameters through numpy views of the C buffers.
#include "python/lf_python.h"

#include <stdio.h>

#include "core/error.h"
#include "models/model.h"

typedef struct {
    PyObject_HEAD lf_model *model;
    PyObject *keep; // list: the arrays frozen weights point into
    // one thread at a time computes with the model (its workspace and batch are shared): the
    // lock's owner may re-enter (a training run's callbacks evaluate), other threads wait with the
    // GIL released, or get a RuntimeError while the owner trains. owner, depth and training
    // change only with the GIL held.
    PyThread_type_lock lock;
    unsigned long owner;
    int depth, training;
} ModelObject;

// Takes the model for this thread (training: for a whole training run). -1 with a RuntimeError
// when another thread is training it (waiting could take the whole run, or deadlock on a
// callback of that run).
static int model_enter(ModelObject *self, int training) {
    unsigned long me = PyThread_get_thread_ident();
    if (self->depth > 0 && self->owner == me) {
        self->depth++;
        return 0;
    }
    if (self->depth > 0 && self->training) {
        PyErr_SetString(
            PyExc_RuntimeError,
            "the model is being trained in another thread (Trainer.train()): call it when train() "
            "has returned, or from a TrainerCallback of that run");
        return -1;
    }
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    self->owner = me;
    self->depth = 1;
    self->training = training;
    return 0;
}

static void model_leave(ModelObject *self) {
    if (--self->depth > 0) return;
    self->owner = 0;
    self->training = 0;
    PyThread_release_lock(self->lock);
}

static int config_int(PyObject *d, const char *key, int *out, int required) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL) {
        if (required) PyErr_Format(PyExc_KeyError, "model config is missing %s", key);
        return required ? -1 : 0;
    }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (x < INT32_MIN || x > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "model config %s = %ld is out of range", key, x);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int config_float(PyObject *d, const char *key, float *out) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL) return 0;
    double x = PyFloat_AsDouble(v);
    if (x == -1.0 && PyErr_Occurred()) return -1;
    *out = (float)x;
    return 0;
}

static int parse_config(PyObject *d, lf_model_config *c) {
    *c = (lf_model_config){0};
    const struct {
        const char *key;
        int *field, required;
    } ints[] = {
        {"arch", &c->arch, 1},
        {"vocab_size", &c->vocab_size, 1},
        {"hidden_size", &c->hidden_size, 1},
        {"num_layers", &c->num_layers, 1},
        {"num_heads", &c->num_heads, 1},
        {"num_kv_heads", &c->num_kv_heads, 1},
        {"head_dim", &c->head_dim, 1},
        {"intermediate_size", &c->intermediate_size, 1},
        {"max_positions", &c->max_positions, 1},
        {"num_labels", &c->num_labels, 1},
        {"type_vocab_size", &c->type_vocab_size, 0},
        {"pad_token_id", &c->pad_token_id, 0},
        {"sliding_window", &c->sliding_window, 0},
        {"position_rule", &c->position_rule, 0},
        {"pool_rule", &c->pool_rule, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (config_int(d, ints[i].key, ints[i].field, ints[i].required) < 0) return -1;
    const struct {
        const char *key;
        float *field;
    } floats[] = {
        {"norm_eps", &c->norm_eps},
        {"hidden_dropout", &c->hidden_dropout},
        {"attention_dropout", &c->attention_dropout},
        {"classifier_dropout", &c->classifier_dropout},
        {"rope_theta", &c->rope_theta},
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (config_float(d, floats[i].key, floats[i].field) < 0) return -1;
    return 0;
}

static int Model_init(ModelObject *self, PyObject *args, PyObject *kwargs) {
    (void)kwargs;
    PyObject *config;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &config)) return -1;
    lf_model_config c;
    if (parse_config(config, &c) < 0) return -1;
    lf_model *m = lf_model_create(&c);
    if (m == NULL) {
        lf_raise_core_error();
        return -1;
    }
    if (self->lock == NULL && (self->lock = PyThread_allocate_lock()) == NULL) {
        lf_model_free(m);
        PyErr_NoMemory();
        return -1;
    }
    lf_model_free(self->model);
    self->model = m;
    Py_XDECREF(self->keep);
    self->keep = PyList_New(0);
    return self->keep == NULL ? -1 : 0;
}

static void Model_dealloc(ModelObject *self) {
    if (self->lock != NULL) PyThread_free_lock(self->lock);
    lf_model_free(self->model);
    Py_XDECREF(self->keep);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *shape_tuple(int ndim, const int64_t *shape) {
    return ndim == 1 ? Py_BuildValue("(L)", (long long)shape[0])
                     : Py_BuildValue("(LL)", (long long)shape[0], (long long)shape[1]);
}

// frozen_specs() -> [(name, shape, loaded)]
static PyObject *Model_frozen_specs(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    PyObject *out = PyList_New(self->model->n_frozen);
    for (int i = 0; out != NULL && i < self->model->n_frozen; i++) {
        const lf_frozen *f = &self->model->frozen[i];
        PyObject *shape = shape_tuple(f->ndim, f->shape);
        PyList_SET_ITEM(out, i, Py_BuildValue("(sNO)", f->name, shape, f->w.data ? Py_True : Py_False));
    }
    return out;
}

// set_frozen(index, array, dtype_name): dtype_name float32 | float16 | bfloat16 (uint16 bits)
static PyObject *set_frozen_unlocked(ModelObject *self, PyObject *args) {
    int index;
    PyObject *obj;
    const char *dtype_name;
    if (!PyArg_ParseTuple(args, "iOs", &index, &obj, &dtype_name)) return NULL;
    lf_model *m = self->model;
    if (index < 0 || index >= m->n_frozen) return PyErr_Format(PyExc_IndexError, "frozen index %d", index);
    const lf_frozen *f = &m->frozen[index];
    char where[640];
    snprintf(where, sizeof where, "for weight %s", f->name);
    lf_dtype dtype;
    if (lf_python_float_dtype(dtype_name, where, &dtype) < 0) return NULL;
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != lf_npy_type(dtype) ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj) || !PyArray_ISALIGNED((PyArrayObject *)obj))
        return PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous aligned numpy array of %s", f->name,
                            dtype_name);
    PyArrayObject *a = (PyArrayObject *)obj;
    int64_t want[2] = {f->shape[0], f->ndim > 1 ? f->shape[1] : 1};
    int ok = PyArray_NDIM(a) == f->ndim && PyArray_DIM(a, 0) == want[0] &&
             (f->ndim == 1 || PyArray_DIM(a, 1) == want[1]);
    if (!ok) {
        PyObject *shape = PyObject_GetAttrString(obj, "shape");
        PyErr_Format(PyExc_ValueError, "%s: shape %R does not match the config's %R", f->name, shape,
                     shape_tuple(f->ndim, f->shape));
        Py_XDECREF(shape);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_model_set_frozen(m, index, PyArray_DATA(a), dtype);
    Py_END_ALLOW_THREADS if (rc != LF_OK) return lf_raise_core_error();
    if (PyList_Append(self->keep, obj) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *view(ModelObject *self, const lf_param *p, float *data) {
    npy_intp dims[2] = {(npy_intp)p->shape[0], (npy_intp)p->shape[1]};
    PyObject *a = PyArray_SimpleNewFromData(p->ndim, dims, NPY_FLOAT32, data);
    if (a == NULL) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)a, (PyObject *)self) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

// params() -> [(name, data view, grad view, no_decay)]
static PyObject *Model_params(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    lf_model *m = self->model;
    PyObject *out = PyList_New(m->n_params);
    for (int i = 0; out != NULL && i < m->n_params; i++) {
        const lf_param *p = &m->params[i];
        PyObject *data = view(self, p, p->data), *grad = view(self, p, p->grad);
        if (data == NULL || grad == NULL) {
            Py_XDECREF(data);
            Py_XDECREF(grad);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i,
                        Py_BuildValue("(sNNO)", p->name, data, grad, p->no_decay ? Py_True : Py_False));
    }
    return out;
}

static PyObject *Model_lora_targets(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    const lf_arch *a = self->model->arch;
    PyObject *out = PyList_New(a->n_lora_targets);
    for (int i = 0; out != NULL && i < a->n_lora_targets; i++)
        PyList_SET_ITEM(out, i, PyUnicode_FromString(a->lora_targets[i]));
    return out;
}

// add_lora(r, scaling, dropout, target_mask, seed)
static PyObject *add_lora_unlocked(ModelObject *self, PyObject *args) {
    lf_lora_config lora;
    unsigned int mask;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "iffIK", &lora.r, &lora.scaling, &lora.dropout, &mask, &seed)) return NULL;
    if (lf_model_add_lora(self->model, lora, mask, seed) != LF_OK) return lf_raise_core_error();
    Py_RETURN_NONE;
}

// set_gradient_checkpointing(on): keep one activation per layer only, recompute layers in backward
static PyObject *set_gradient_checkpointing_unlocked(ModelObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    self->model->gradient_checkpointing = on;
    Py_RETURN_NONE;
}

// set_mode(training, seed, restart=False): restart: the dropout streams start again at step 0
static PyObject *set_mode_unlocked(ModelObject *self, PyObject *args) {
    int training, restart = 0;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "pK|p", &training, &seed, &restart)) return NULL;
    self->model->training = training;
    self->model->seed = seed;
    if (restart) self->model->step = 0;
    Py_RETURN_NONE;
}

// set_pad_token_id(id or -1): decoders read config.pad_token_id at every call, as transformers
static PyObject *set_pad_token_id_unlocked(ModelObject *self, PyObject *arg) {
    long pad = PyLong_AsLong(arg);
    if (pad == -1 && PyErr_Occurred()) return NULL;
    if (pad < -1 || pad > INT32_MAX)
        return PyErr_Format(PyExc_ValueError, "pad_token_id %ld is out of range", pad);
    self->model->cfg.pad_token_id = (int)pad;
    Py_RETURN_NONE;
}

// a (B, L) int64 array from obj, or NULL with an exception naming what
static PyArrayObject *int_matrix(PyObject *obj, const char *what) {
    PyArrayObject *a =
        (PyArrayObject *)PyArray_FROMANY(obj, NPY_INT64, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (a == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be an integer array", what);
        return NULL;
    }
    if (PyArray_NDIM(a) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D (batch, length), got %d dimensions", what,
                     PyArray_NDIM(a));
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static int same_shape(PyArrayObject *a, PyArrayObject *b, const char *an, const char *bn) {
    if (PyArray_DIM(a, 0) == PyArray_DIM(b, 0) && PyArray_DIM(a, 1) == PyArray_DIM(b, 1)) return 0;
    PyErr_Format(PyExc_ValueError, "%s shape (%ld, %ld) does not match %s shape (%ld, %ld)", bn,
                 (long)PyArray_DIM(b, 0), (long)PyArray_DIM(b, 1), an, (long)PyArray_DIM(a, 0),
                 (long)PyArray_DIM(a, 1));
    return -1;
}

typedef struct {
    PyArrayObject *ids, *mask, *types, *labels, *weights;
} batch_arrays;

static void batch_release(batch_arrays *b) {
    Py_XDECREF(b->ids);
    Py_XDECREF(b->mask);
    Py_XDECREF(b->types);
    Py_XDECREF(b->labels);
    Py_XDECREF(b->weights);
}

// converts and checks shapes, then unpads into the model's packed batch
static int load_batch(ModelObject *self, batch_arrays *b, PyObject *ids, PyObject *mask, PyObject *types,
                      PyObject *labels, PyObject *weights) {
    *b = (batch_arrays){0};
    lf_model *m = self->model;
    if ((b->ids = int_matrix(ids, "input_ids")) == NULL) return -1;
    if ((b->mask = int_matrix(mask, "attention_mask")) == NULL) return -1;
    if (same_shape(b->ids, b->mask, "input_ids", "attention_mask") < 0) return -1;
    if (types != Py_None) {
        if ((b->types = int_matrix(types, "token_type_ids")) == NULL) return -1;
        if (same_shape(b->ids, b->types, "input_ids", "token_type_ids") < 0) return -1;
    }
    npy_intp B = PyArray_DIM(b->ids, 0), L = PyArray_DIM(b->ids, 1);
    if (B > INT32_MAX / 2 || L > INT32_MAX / 2)
        return PyErr_SetString(PyExc_ValueError, "batch too large"), -1;
    if (labels != Py_None) {
        b->labels = (PyArrayObject *)PyArray_FROMANY(labels, NPY_INT64, 1, 1,
                                                     NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
        if (b->labels == NULL) return -1;
        if (PyArray_DIM(b->labels, 0) != B)
            return PyErr_Format(PyExc_ValueError, "labels has %ld values for a batch of %ld rows",
                                (long)PyArray_DIM(b->labels, 0), (long)B),
                   -1;
    }
    if (weights != Py_None) {
        b->weights = (PyArrayObject *)PyArray_FROMANY(
            weights, NPY_FLOAT32, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
        if (b->weights == NULL) return -1;
        if (PyArray_DIM(b->weights, 0) != m->cfg.num_labels)
            return PyErr_Format(PyExc_ValueError, "class_weights has %ld values, the model has num_labels=%d",
                                (long)PyArray_DIM(b->weights, 0), m->cfg.num_labels),
                   -1;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_unpad_batch(m, PyArray_DATA(b->ids), PyArray_DATA(b->mask),
                                               b->types ? PyArray_DATA(b->types) : NULL,
                                               b->labels ? PyArray_DATA(b->labels) : NULL, (int)B, (int)L);
    Py_END_ALLOW_THREADS if (rc != LF_OK) return lf_raise_core_error(), -1;
    return 0;
}

static PyObject *new_logits(const lf_model *m) {
    npy_intp dims[2] = {m->batch.B, m->cfg.num_labels};
    return PyArray_SimpleNew(2, dims, NPY_FLOAT32);
}

// forward(input_ids, attention_mask, token_type_ids=None) -> logits (B, num_labels)
static PyObject *forward_unlocked(ModelObject *self, PyObject *args) {
    PyObject *ids, *mask, *types = Py_None;
    if (!PyArg_ParseTuple(args, "OO|O", &ids, &mask, &types)) return NULL;
    batch_arrays b;
    PyObject *logits = NULL;
    if (load_batch(self, &b, ids, mask, types, Py_None, Py_None) == 0 && (logits = new_logits(self->model))) {
        int rc;
        float *out = PyArray_DATA((PyArrayObject *)logits);
        Py_BEGIN_ALLOW_THREADS rc = lf_model_forward(self->model, out);
        Py_END_ALLOW_THREADS if (rc != LF_OK) {
            Py_CLEAR(logits);
            lf_raise_core_error();
        }
    }
    batch_release(&b);
    return logits;
}

// forward_backward(input_ids, attention_mask, labels, class_weights=None, token_type_ids=None)
//   -> (loss, logits); grads accumulate into the params' grad buffers
static PyObject *forward_backward_unlocked(ModelObject *self, PyObject *args) {
    PyObject *ids, *mask, *labels, *weights = Py_None, *types = Py_None;
    if (!PyArg_ParseTuple(args, "OOO|OO", &ids, &mask, &labels, &weights, &types)) return NULL;
    if (labels == Py_None) return PyErr_Format(PyExc_ValueError, "forward_backward needs labels");
    batch_arrays b;
    PyObject *logits = NULL, *out = NULL;
    if (load_batch(self, &b, ids, mask, types, labels, weights) == 0 && (logits = new_logits(self->model))) {
        int rc;
        float loss = 0.0f, *z = PyArray_DATA((PyArrayObject *)logits);
        const float *w = b.weights ? PyArray_DATA(b.weights) : NULL;
        Py_BEGIN_ALLOW_THREADS rc = lf_model_forward_backward(self->model, w, NULL, NULL, z, &loss);
        Py_END_ALLOW_THREADS if (rc != LF_OK) lf_raise_core_error();
        else out = Py_BuildValue("(dO)", (double)loss, logits);
    }
    Py_XDECREF(logits);
    batch_release(&b);
    return out;
}

static PyObject *zero_grad_unlocked(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    lf_model_zero_grad(self->model);
    Py_RETURN_NONE;
}

// to_device(device, dtype_name=None, index=0): device "cpu" or "cuda"; dtype_name: the compute dtype
// (None: the device's current one; float32 at first); index: the CUDA device (cuda:index). On the CPU
// float32 or bfloat16 (products on oneDNN)
static PyObject *to_device_unlocked(ModelObject *self, PyObject *args) {
    const char *device, *dtype_name = NULL;
    int index = 0;
    if (!PyArg_ParseTuple(args, "s|zi", &device, &dtype_name, &index)) return NULL;
    lf_model *m = self->model;
    if (strcmp(device, "cpu") == 0) {
        lf_dtype dtype = m->cpu_dtype;
        if (dtype_name != NULL && lf_python_float_dtype(dtype_name, "on the CPU", &dtype) < 0) return NULL;
        if (dtype == LF_F16)
            return PyErr_Format(
                PyExc_ValueError,
                "dtype 'float16' on the CPU: lorafast computes in float32 or bfloat16 there (float16 "
                "applies to CUDA; frozen weights keep the dtype they were loaded in)");
        lf_model_to_cpu(m);
        int rc;
        Py_BEGIN_ALLOW_THREADS rc = lf_model_set_cpu_dtype(m, dtype);
        Py_END_ALLOW_THREADS if (rc != LF_OK) return lf_raise_core_error();
        Py_RETURN_NONE;
    }
    if (strcmp(device, "cuda") != 0)
        return PyErr_Format(PyExc_ValueError, "device '%s' is not supported: 'cpu' or 'cuda'", device);
    lf_dtype dtype = m->cuda_model != NULL ? m->cuda_dtype : LF_F32;
    if (dtype_name != NULL && lf_python_float_dtype(dtype_name, "on CUDA", &dtype) < 0) return NULL;
    if (index < 0) return PyErr_Format(PyExc_ValueError, "device 'cuda:%d': the index must be >= 0", index);
    if (lf_python_cuda() == NULL) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_model_to_cuda(m, dtype, index);
    Py_END_ALLOW_THREADS if (rc != LF_OK) return lf_raise_core_error();
    Py_RETURN_NONE;
}

// The methods that compute with the model or change it, each under the model's lock.
typedef PyObject *(*model_method)(ModelObject *self, PyObject *args);

static PyObject *locked(ModelObject *self, PyObject *args, model_method method) {
    if (model_enter(self, 0) < 0) return NULL;
    PyObject *out = method(self, args);
    model_leave(self);
    return out;
}
static PyObject *Model_set_frozen(ModelObject *self, PyObject *a) {
    return locked(self, a, set_frozen_unlocked);
}
static PyObject *Model_add_lora(ModelObject *self, PyObject *a) { return locked(self, a, add_lora_unlocked); }
static PyObject *Model_set_gradient_checkpointing(ModelObject *self, PyObject *a) {
    return locked(self, a, set_gradient_checkpointing_unlocked);
}
static PyObject *Model_set_mode(ModelObject *self, PyObject *a) { return locked(self, a, set_mode_unlocked); }
static PyObject *Model_set_pad_token_id(ModelObject *self, PyObject *a) {
    return locked(self, a, set_pad_token_id_unlocked);
}
static PyObject *Model_forward(ModelObject *self, PyObject *a) { return locked(self, a, forward_unlocked); }
static PyObject *Model_forward_backward(ModelObject *self, PyObject *a) {
    return locked(self, a, forward_backward_unlocked);
}
static PyObject *Model_zero_grad(ModelObject *self, PyObject *a) {
    return locked(self, a, zero_grad_unlocked);
}
static PyObject *Model_to_device(ModelObject *self, PyObject *a) {
    return locked(self, a, to_device_unlocked);
}

static PyObject *Model_get_device(ModelObject *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(self->model->cuda_model != NULL ? "cuda" : "cpu");
}

static PyObject *Model_get_device_index(ModelObject *self, void *closure) {
    (void)closure;
    if (self->model->cuda_model == NULL) Py_RETURN_NONE;
    return PyLong_FromLong(self->model->cuda_device);
}

static PyObject *Model_get_device_dtype(ModelObject *self, void *closure) {
    (void)closure;
    if (self->model->cuda_model == NULL) Py_RETURN_NONE;
    return PyUnicode_FromString(lf_dtype_name(self->model->cuda_dtype));
}

static PyObject *Model_get_cpu_dtype(ModelObject *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(lf_dtype_name(self->model->cpu_dtype));
}

static PyObject *Model_get_device_bytes(ModelObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(lf_model_device_bytes(self->model));
}

static PyGetSetDef model_getset[] = {
    {"device", (getter)Model_get_device, NULL, "'cpu', or 'cuda' when the model has a device copy", NULL},
    {"device_index", (getter)Model_get_device_index, NULL,
     "the CUDA device of the copy (cuda:N), None on the CPU", NULL},
    {"device_dtype", (getter)Model_get_device_dtype, NULL, "the CUDA compute dtype's name, None on the CPU",
     NULL},
    {"cpu_dtype", (getter)Model_get_cpu_dtype, NULL, "the CPU's compute dtype: 'float32' or 'bfloat16'",
     NULL},
    {"device_bytes", (getter)Model_get_device_bytes, NULL, "device memory of the CUDA copy (0 on the CPU)",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef model_methods[] = {
    {"frozen_specs", (PyCFunction)Model_frozen_specs, METH_NOARGS,
     "[(name, shape, loaded)] of frozen weights"},
    {"set_frozen", (PyCFunction)Model_set_frozen, METH_VARARGS, "set_frozen(index, array, dtype_name)"},
    {"params", (PyCFunction)Model_params, METH_NOARGS, "[(name, data, grad, no_decay)] of trainable params"},
    {"lora_targets", (PyCFunction)Model_lora_targets, METH_NOARGS, "module suffixes that can take LoRA"},
    {"add_lora", (PyCFunction)Model_add_lora, METH_VARARGS,
     "add_lora(r, scaling, dropout, target_mask, seed)"},
    {"set_mode", (PyCFunction)Model_set_mode, METH_VARARGS, "set_mode(training, seed, restart=False)"},
    {"set_pad_token_id", (PyCFunction)Model_set_pad_token_id, METH_O, "set_pad_token_id(id or -1)"},
    {"set_gradient_checkpointing", (PyCFunction)Model_set_gradient_checkpointing, METH_O,
     "set_gradient_checkpointing(on): recompute each layer in backward"},
    {"forward", (PyCFunction)Model_forward, METH_VARARGS,
     "forward(ids, mask, token_type_ids=None) -> logits"},
    {"forward_backward", (PyCFunction)Model_forward_backward, METH_VARARGS,
     "forward_backward(ids, mask, labels, class_weights=None, token_type_ids=None) -> (loss, logits)"},
    {"zero_grad", (PyCFunction)Model_zero_grad, METH_NOARGS, "zeroes the params' grads"},
    {"to_device", (PyCFunction)Model_to_device, METH_VARARGS,
     "to_device('cpu' | 'cuda', dtype_name=None): moves the compute (CUDA dtype: float32, bfloat16, "
     "float16)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lorafast._C.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A sequence-classification model in C (models/model.h)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Model_init,
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_methods = model_methods,
    .tp_getset = model_getset,
};

// the C model behind a lorafast._C.Model, for other bindings (the training loop), taken for this
// thread (training: a training run) until lf_model_release
lf_model *lf_model_take(PyObject *obj, int training) {
    if (!PyObject_TypeCheck(obj, &ModelType)) {
        PyErr_Format(PyExc_TypeError, "model must be a lorafast._C.Model (or a trainable capsule), got %s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    ModelObject *self = (ModelObject *)obj;
    return model_enter(self, training) < 0 ? NULL : self->model;
}

void lf_model_release(PyObject *obj) { model_leave((ModelObject *)obj); }

int lf_bind_model(PyObject *module) {
    if (PyType_Ready(&ModelType) < 0) return -1;
    Py_INCREF(&ModelType);
    return PyModule_AddObject(module, "Model", (PyObject *)&ModelType);
}
