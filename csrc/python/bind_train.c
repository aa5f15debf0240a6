// Training: AdamW, clipping and schedules (for parity tests), the training loop and prediction
// over a lorafast._C.Model (train/loop.c).
#include "python/lf_python.h"

#include <stddef.h>
#include <string.h>

#include "core/error.h"
#include "models/model.h"
#include "train/adamw.h"
#include "train/clip.h"
#include "train/loop.h"
#include "train/loss_scale.h"
#include "train/schedule.h"

// The array obj as a C-contiguous array of dtype type, checked; NULL with a ValueError naming it.
static PyArrayObject *array_arg(PyObject *obj, int type, int ndim, const char *name, int writeable) {
    if (!PyArray_Check(obj))
        return (PyArrayObject *)PyErr_Format(PyExc_TypeError, "%s must be a numpy array", name);
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != type || PyArray_NDIM(a) != ndim || !PyArray_IS_C_CONTIGUOUS(a)) {
        PyArray_Descr *want = PyArray_DescrFromType(type);
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %d-D %c array", name, ndim, want->type);
        Py_DECREF(want);
        return NULL;
    }
    if (writeable && !PyArray_ISWRITEABLE(a))
        return (PyArrayObject *)PyErr_Format(PyExc_ValueError, "%s is read-only", name);
    return a;
}

// The C model of obj, a lorafast._C.Model, taken for this thread (training: for a training run)
// until lf_model_release(obj); NULL with the exception set.
static lf_model *model_arg(PyObject *obj, int training) {
    lf_model *m = lf_model_take(obj, training);
    if (m != NULL && lf_model_check_ready(m) != LF_OK) {
        lf_raise_core_error();
        lf_model_release(obj);
        return NULL;
    }
    return m;
}

// adamw_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay): one AdamW update in place
static PyObject *py_adamw_update(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *p, *g, *m, *v;
    long long step;
    lf_adamw_hparams h;
    if (!PyArg_ParseTuple(args, "OOOOLddddd", &p, &g, &m, &v, &step, &h.lr, &h.beta1, &h.beta2, &h.eps,
                          &h.weight_decay))
        return NULL;
    PyArrayObject *a[4];
    const char *names[4] = {"p", "g", "m", "v"};
    PyObject *objs[4] = {p, g, m, v};
    for (int i = 0; i < 4; i++) {
        if (!(a[i] = array_arg(objs[i], NPY_FLOAT32, 1, names[i], i != 1))) return NULL;
        if (PyArray_SIZE(a[i]) != PyArray_SIZE(a[0]))
            return PyErr_Format(PyExc_ValueError, "%s has %lld elements, p has %lld", names[i],
                                (long long)PyArray_SIZE(a[i]), (long long)PyArray_SIZE(a[0]));
    }
    if (step < 1) return PyErr_Format(PyExc_ValueError, "step must be >= 1, got %lld", step);
    Py_BEGIN_ALLOW_THREADS adamw_update(PyArray_DATA(a[0]), PyArray_DATA(a[1]), PyArray_DATA(a[2]),
                                        PyArray_DATA(a[3]), PyArray_SIZE(a[0]), &h, step);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

// clip_grad_norm(grads: list of float32 arrays, max_norm) -> the norm before clipping
static PyObject *py_clip_grad_norm(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list;
    double max_norm;
    if (!PyArg_ParseTuple(args, "O!d", &PyList_Type, &list, &max_norm)) return NULL;
    int n = (int)PyList_GET_SIZE(list);
    float *grads[n > 0 ? n : 1];
    int64_t sizes[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        PyArrayObject *a = array_arg(PyList_GET_ITEM(list, i), NPY_FLOAT32, 1, "grads[i]", 1);
        if (!a) return NULL;
        grads[i] = PyArray_DATA(a);
        sizes[i] = PyArray_SIZE(a);
    }
    double norm;
    Py_BEGIN_ALLOW_THREADS norm = grad_global_norm(grads, sizes, n);
    if (max_norm > 0) grad_clip(grads, sizes, n, norm, max_norm);
    Py_END_ALLOW_THREADS return PyFloat_FromDouble(norm);
}

// loss_scale_update(scale, growth_tracker, found_inf) -> (scale, growth_tracker) after one update
static PyObject *py_loss_scale_update(PyObject *self, PyObject *args) {
    (void)self;
    double scale;
    long long tracker;
    int found_inf;
    if (!PyArg_ParseTuple(args, "dLp", &scale, &tracker, &found_inf)) return NULL;
    if (!(scale >= 0) || tracker < 0) {
        PyObject *value = PyFloat_FromDouble(scale);
        PyErr_Format(PyExc_ValueError, "loss scale %R and growth_tracker %lld must be >= 0", value, tracker);
        Py_XDECREF(value);
        return NULL;
    }
    int64_t growth = tracker;
    loss_scale_update(&scale, &growth, found_inf);
    return Py_BuildValue("dL", scale, (long long)growth);
}

static const char *SCHEDULES[] = {"linear", "cosine", "constant", "constant_with_warmup"};

static int schedule_arg(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, SCHEDULES[i]) == 0) return i;
    PyErr_Format(PyExc_ValueError,
                 "lr_scheduler_type %s is not one of linear, cosine, constant, "
                 "constant_with_warmup",
                 name);
    return -1;
}

// lr_schedule_factor(kind, step, warmup, total) -> factor of the base learning rate
static PyObject *py_lr_schedule_factor(PyObject *self, PyObject *args) {
    (void)self;
    const char *kind;
    long long step, warmup, total;
    if (!PyArg_ParseTuple(args, "sLLL", &kind, &step, &warmup, &total)) return NULL;
    int k = schedule_arg(kind);
    if (k < 0) return NULL;
    return PyFloat_FromDouble(lr_schedule_factor(k, step, warmup, total));
}

// updates_per_epoch(n, batch_size, drop_last, grad_accum) -> (batches, updates) per epoch
static PyObject *py_updates_per_epoch(PyObject *self, PyObject *args) {
    (void)self;
    long long n;
    int batch_size, drop_last, grad_accum;
    if (!PyArg_ParseTuple(args, "Lipi", &n, &batch_size, &drop_last, &grad_accum)) return NULL;
    if (n < 0 || batch_size < 1 || grad_accum < 1)
        return PyErr_Format(PyExc_ValueError, "n (%lld) must be >= 0, batch_size (%d), grad_accum (%d) >= 1",
                            n, batch_size, grad_accum);
    return Py_BuildValue("(LL)", (long long)lf_batches_per_epoch(n, batch_size, drop_last),
                         (long long)lf_updates_per_epoch(n, batch_size, drop_last, grad_accum));
}

// Reads a dataset (ids int32, offsets int64, labels int32 or None) into d.
static int dataset_arg(PyObject *ids, PyObject *offsets, PyObject *labels, lf_dataset *d) {
    PyArrayObject *i = array_arg(ids, NPY_INT32, 1, "ids", 0);
    PyArrayObject *o = i ? array_arg(offsets, NPY_INT64, 1, "offsets", 0) : NULL;
    if (!o) return -1;
    d->n = PyArray_SIZE(o) - 1;
    if (d->n < 0) return PyErr_Format(PyExc_ValueError, "offsets must have n+1 >= 1 elements"), -1;
    d->ids = PyArray_DATA(i);
    d->offsets = PyArray_DATA(o);
    if (d->offsets[0] != 0 || d->offsets[d->n] != PyArray_SIZE(i))
        return PyErr_Format(PyExc_ValueError, "offsets must run from 0 to len(ids) = %lld",
                            (long long)PyArray_SIZE(i)),
               -1;
    for (int64_t k = 0; k < d->n; k++)
        if (d->offsets[k + 1] < d->offsets[k])
            return PyErr_Format(PyExc_ValueError, "offsets must not decrease (at %lld)", (long long)k), -1;
    d->labels = NULL;
    if (labels != Py_None) {
        PyArrayObject *l = array_arg(labels, NPY_INT32, 1, "labels", 0);
        if (!l) return -1;
        if (PyArray_SIZE(l) != d->n)
            return PyErr_Format(PyExc_ValueError, "labels has %lld elements for %lld examples",
                                (long long)PyArray_SIZE(l), (long long)d->n),
                   -1;
        d->labels = PyArray_DATA(l);
    }
    return 0;
}

static const float *class_weights_arg(PyObject *obj, const lf_model *m) {
    if (obj == Py_None) return NULL;
    PyArrayObject *w = array_arg(obj, NPY_FLOAT32, 1, "class_weights", 0);
    if (!w) return NULL;
    if (PyArray_SIZE(w) != m->cfg.num_labels)
        return PyErr_Format(PyExc_ValueError, "class_weights has %lld values for num_labels=%d",
                            (long long)PyArray_SIZE(w), m->cfg.num_labels),
               NULL;
    return PyArray_DATA(w);
}

// predict(model, ids, offsets, labels | None, batch_size, class_weights | None) -> (logits, loss | None)
static PyObject *py_predict(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *model, *ids, *offsets, *labels, *weights;
    int batch_size;
    if (!PyArg_ParseTuple(args, "OOOOiO", &model, &ids, &offsets, &labels, &batch_size, &weights))
        return NULL;
    lf_dataset d;
    if (dataset_arg(ids, offsets, labels, &d) < 0) return NULL;
    lf_model *m = model_arg(model, 0);
    if (!m) return NULL;
    PyObject *logits = NULL, *out = NULL;
    const float *w = class_weights_arg(weights, m);
    npy_intp dims[2] = {(npy_intp)(d.n > 0 ? d.n : 0), m->cfg.num_labels};
    if ((weights == Py_None || w) && (logits = PyArray_ZEROS(2, dims, NPY_FLOAT32, 0))) {
        double loss = 0.0;
        int rc;
        Py_BEGIN_ALLOW_THREADS rc =
            lf_predict(m, &d, batch_size, w, PyArray_DATA((PyArrayObject *)logits), d.labels ? &loss : NULL);
        Py_END_ALLOW_THREADS if (rc != LF_OK) lf_raise_core_error();
        else if (d.labels) out = Py_BuildValue("(Od)", logits, loss);
        else out = Py_BuildValue("(OO)", logits, Py_None);
    }
    Py_XDECREF(logits);
    lf_model_release(model);
    return out;
}

// dataset_check(model, ids, offsets, labels | None, what): LF_EINVAL as ValueError naming the
// first bad example of the dataset called `what` (empty, ids outside the vocabulary, bad label)
static PyObject *py_dataset_check(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *model, *ids, *offsets, *labels;
    const char *what;
    if (!PyArg_ParseTuple(args, "OOOOs", &model, &ids, &offsets, &labels, &what)) return NULL;
    lf_dataset d;
    if (dataset_arg(ids, offsets, labels, &d) < 0) return NULL;
    lf_model *m = model_arg(model, 0);
    if (!m) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_dataset_check(&d, what, m->cfg.vocab_size, m->cfg.num_labels);
    Py_END_ALLOW_THREADS lf_model_release(model);
    if (rc != LF_OK) return lf_raise_core_error();
    Py_RETURN_NONE;
}

// The loop's state crosses the binding as a dict (the Trainer's): lf_train_state's numbers by
// name, read at the start and written back at every callback and at the end, and the AdamW
// moments "exp_avg", "exp_avg_sq" (float32 arrays, written in place).
static const struct {
    const char *key;
    size_t offset;
    int is_count; // int64_t, else double
} STATE_FIELDS[] = {
    {"global_step", offsetof(lf_train_state, global_step), 1},
    {"epoch", offsetof(lf_train_state, epoch), 1},
    {"batch_in_epoch", offsetof(lf_train_state, batch_in_epoch), 1},
    {"micro_steps", offsetof(lf_train_state, micro_steps), 1},
    {"last_log_step", offsetof(lf_train_state, last_log_step), 1},
    {"skipped_steps", offsetof(lf_train_state, skipped_steps), 1},
    {"growth_tracker", offsetof(lf_train_state, growth_tracker), 1},
    {"loss_total", offsetof(lf_train_state, loss_total), 0},
    {"loss_since_log", offsetof(lf_train_state, loss_since_log), 0},
    {"loss_scale", offsetof(lf_train_state, loss_scale), 0},
};
enum { N_STATE_FIELDS = sizeof STATE_FIELDS / sizeof STATE_FIELDS[0] };

static int state_load(PyObject *dict, lf_train_state *st) {
    if (!PyDict_Check(dict)) return PyErr_Format(PyExc_TypeError, "state must be a dict"), -1;
    for (int i = 0; i < N_STATE_FIELDS; i++) {
        PyObject *v = PyDict_GetItemString(dict, STATE_FIELDS[i].key);
        if (v == NULL)
            return PyErr_Format(PyExc_KeyError, "loop state is missing %s", STATE_FIELDS[i].key), -1;
        char *field = (char *)st + STATE_FIELDS[i].offset;
        if (STATE_FIELDS[i].is_count)
            *(int64_t *)field = PyLong_AsLongLong(v);
        else
            *(double *)field = PyFloat_AsDouble(v);
        if (PyErr_Occurred())
            return PyErr_Format(PyExc_TypeError, "loop state %s must be a number", STATE_FIELDS[i].key), -1;
    }
    return 0;
}

static int state_store(PyObject *dict, const lf_train_state *st) {
    for (int i = 0; i < N_STATE_FIELDS; i++) {
        const char *field = (const char *)st + STATE_FIELDS[i].offset;
        PyObject *v = STATE_FIELDS[i].is_count ? PyLong_FromLongLong(*(const int64_t *)field)
                                               : PyFloat_FromDouble(*(const double *)field);
        if (v == NULL || PyDict_SetItemString(dict, STATE_FIELDS[i].key, v) < 0) {
            Py_XDECREF(v);
            return -1;
        }
        Py_DECREF(v);
    }
    return 0;
}

typedef struct {
    PyObject *callback, *state;
    const lf_train_state *st;
} run_ctx;

// Runs the Python callback with the GIL: 0 go on, 1 stop (it returned True), -1 its exception
// (a KeyboardInterrupt from a pending SIGINT included).
static int run_callback(void *ctx, const lf_train_event *ev) {
    run_ctx *c = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    int r = -1;
    if (state_store(c->state, c->st) == 0 && PyErr_CheckSignals() == 0) {
        PyObject *result = PyObject_CallFunction(
            c->callback, "{s:i,s:i,s:i,s:i,s:i,s:L,s:d,s:d,s:d,s:d,s:d,s:i}", "epoch_end", ev->epoch_end,
            "should_log", ev->should_log, "should_evaluate", ev->should_evaluate, "should_save",
            ev->should_save, "is_last", ev->is_last, "global_step", (long long)ev->global_step, "epoch",
            ev->epoch, "loss", ev->loss, "learning_rate", ev->learning_rate, "grad_norm", ev->grad_norm,
            "step_loss", ev->step_loss, "skipped", ev->skipped);
        if (result) {
            r = PyObject_IsTrue(result);
            Py_DECREF(result);
        }
    }
    PyGILState_Release(gil);
    return r;
}

// the caller's loss of a micro-batch, a Python callable compute_loss(rows, logits) -> (loss,
// dlogits): rows (B,) int64, the batch's example indices, and its logits (B, num_labels) as numpy
// copies in; a float and a (B, num_labels) array out
typedef struct {
    PyObject *fn;
    int num_labels;
} python_loss;

static PyObject *array_copy(const void *data, int ndim, npy_intp *dims, int type) {
    PyObject *a = PyArray_SimpleNew(ndim, dims, type);
    if (a) memcpy(PyArray_DATA((PyArrayObject *)a), data, (size_t)PyArray_NBYTES((PyArrayObject *)a));
    return a;
}

static int take_loss_result(PyObject *result, int B, int NL, float *dlogits, float *loss) {
    PyObject *value, *grad;
    if (!PyArg_ParseTuple(result, "OO", &value, &grad)) return -1;
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred()) return -1;
    PyArrayObject *g = (PyArrayObject *)PyArray_FROMANY(grad, NPY_FLOAT32, 2, 2,
                                                        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    if (!g) return -1;
    int ok = PyArray_DIM(g, 0) == B && PyArray_DIM(g, 1) == NL;
    if (ok)
        memcpy(dlogits, PyArray_DATA(g), sizeof(float) * (size_t)B * NL);
    else
        PyErr_Format(PyExc_ValueError, "the loss gradient has shape (%lld, %lld), the logits (%d, %d)",
                     (long long)PyArray_DIM(g, 0), (long long)PyArray_DIM(g, 1), B, NL);
    Py_DECREF(g);
    *loss = (float)v;
    return ok ? 0 : -1;
}

static int run_python_loss(void *ctx, const int64_t *rows, int B, const float *logits, float *dlogits,
                           float *loss) {
    const python_loss *c = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    npy_intp n[1] = {B}, scores[2] = {B, c->num_labels};
    PyObject *r = array_copy(rows, 1, n, NPY_INT64), *z = array_copy(logits, 2, scores, NPY_FLOAT32);
    int rc = -1;
    if (r && z && PyErr_CheckSignals() == 0) {
        PyObject *result = PyObject_CallFunctionObjArgs(c->fn, r, z, NULL);
        if (result) rc = take_loss_result(result, B, c->num_labels, dlogits, loss);
        Py_XDECREF(result);
    }
    Py_XDECREF(r);
    Py_XDECREF(z);
    PyGILState_Release(gil);
    return rc == 0 ? LF_OK : lf_error(LF_EINTR, "compute_loss raised an exception");
}

static int config_get(PyObject *config, const char *key, const char *format, void *out) {
    PyObject *value = PyDict_GetItemString(config, key);
    if (!value) return PyErr_Format(PyExc_KeyError, "train config is missing %s", key), -1;
    if (format[0] == 'd') {
        *(double *)out = PyFloat_AsDouble(value);
    } else {
        long long v = PyLong_AsLongLong(value);
        if (format[0] == 'i')
            *(int *)out = (int)v;
        else
            *(int64_t *)out = v;
    }
    if (PyErr_Occurred()) return PyErr_Format(PyExc_TypeError, "train config %s must be a number", key), -1;
    return 0;
}

static int config_arg(PyObject *config, lf_train_config *cfg) {
    if (!PyDict_Check(config)) return PyErr_Format(PyExc_TypeError, "config must be a dict"), -1;
    PyObject *schedule = PyDict_GetItemString(config, "schedule");
    if (!schedule || !PyUnicode_Check(schedule))
        return PyErr_Format(PyExc_KeyError, "train config needs schedule (a str)"), -1;
    if ((cfg->schedule = schedule_arg(PyUnicode_AsUTF8(schedule))) < 0) return -1;
    int64_t seed = 0;
    struct {
        const char *key, *format;
        void *out;
    } fields[] = {
        {"batch_size", "i", &cfg->batch_size},
        {"grad_accum", "i", &cfg->grad_accum},
        {"drop_last", "i", &cfg->drop_last},
        {"max_steps", "L", &cfg->max_steps},
        {"warmup_steps", "L", &cfg->warmup_steps},
        {"lr", "d", &cfg->adam.lr},
        {"beta1", "d", &cfg->adam.beta1},
        {"beta2", "d", &cfg->adam.beta2},
        {"eps", "d", &cfg->adam.eps},
        {"weight_decay", "d", &cfg->adam.weight_decay},
        {"max_grad_norm", "d", &cfg->max_grad_norm},
        {"seed", "L", &seed},
        {"log_every", "i", &cfg->log_every},
        {"eval_every", "i", &cfg->eval_every},
        {"save_every", "i", &cfg->save_every},
        {"log_first_step", "i", &cfg->log_first_step},
        {"log_steps", "L", &cfg->log_steps},
        {"eval_steps", "L", &cfg->eval_steps},
        {"save_steps", "L", &cfg->save_steps},
        {"loss_scaling", "i", &cfg->loss_scaling},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (config_get(config, fields[i].key, fields[i].format, fields[i].out) < 0) return -1;
    cfg->seed = (uint64_t)seed;
    return 0;
}

// data parallel (train/loop.h): Python callables epoch_order(epoch) -> this rank's examples of the
// epoch (an int64 array of epoch_size indices) and grad_reduce(buf) (buf: a float32 array over the
// model's flat gradient-and-loss buffer, no copy, to be replaced by its mean over the ranks)
typedef struct {
    PyObject *order, *reduce, *model;
} data_parallel;

static int run_epoch_order(void *ctx, int64_t epoch, int64_t *order, int64_t n) {
    const data_parallel *c = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = -1;
    PyObject *result =
        PyErr_CheckSignals() == 0 ? PyObject_CallFunction(c->order, "L", (long long)epoch) : NULL;
    PyArrayObject *a =
        result ? (PyArrayObject *)PyArray_FROMANY(result, NPY_INT64, 1, 1, NPY_ARRAY_C_CONTIGUOUS) : NULL;
    if (a && PyArray_SIZE(a) != n)
        PyErr_Format(PyExc_ValueError,
                     "epoch_order(%lld) returned %lld examples, the epoch has epoch_size=%lld",
                     (long long)epoch, (long long)PyArray_SIZE(a), (long long)n);
    else if (a) {
        memcpy(order, PyArray_DATA(a), sizeof(int64_t) * (size_t)n);
        rc = 0;
    }
    Py_XDECREF(a);
    Py_XDECREF(result);
    PyGILState_Release(gil);
    return rc == 0 ? LF_OK : lf_error(LF_EINTR, "epoch_order raised an exception");
}

static int run_grad_reduce(void *ctx, float *buf, int64_t n) {
    const data_parallel *c = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *view = PyArray_SimpleNewFromData(1, dims, NPY_FLOAT32, buf), *result = NULL;
    if (view && PyArray_SetBaseObject((PyArrayObject *)view, Py_NewRef(c->model)) < 0) Py_CLEAR(view);
    if (view && PyErr_CheckSignals() == 0) result = PyObject_CallFunctionObjArgs(c->reduce, view, NULL);
    int rc = result ? 0 : -1;
    Py_XDECREF(result);
    Py_XDECREF(view);
    PyGILState_Release(gil);
    return rc == 0 ? LF_OK : lf_error(LF_EINTR, "grad_reduce raised an exception");
}

// config's epoch_order, grad_reduce (callables or None, both or neither) and epoch_size into cfg
static int data_parallel_arg(PyObject *config, data_parallel *dp, lf_train_config *cfg) {
    dp->order = PyDict_GetItemString(config, "epoch_order"); // borrowed; config outlives the run
    dp->reduce = PyDict_GetItemString(config, "grad_reduce");
    int has_order = dp->order && dp->order != Py_None, has_reduce = dp->reduce && dp->reduce != Py_None;
    if (!has_order && !has_reduce) return 0;
    if (!has_order || !has_reduce || !PyCallable_Check(dp->order) || !PyCallable_Check(dp->reduce))
        return PyErr_Format(PyExc_TypeError,
                            "train config epoch_order and grad_reduce must both be callables "
                            "(data parallel) or both None"),
               -1;
    if (config_get(config, "epoch_size", "L", &cfg->epoch_size) < 0) return -1;
    PyObject *device = PyDict_GetItemString(config, "grad_reduce_device");
    if (device != NULL && (cfg->grad_reduce_device = PyObject_IsTrue(device)) < 0) return -1;
    if (cfg->epoch_size < 1)
        return PyErr_Format(PyExc_ValueError, "train config epoch_size must be >= 1, got %lld",
                            (long long)cfg->epoch_size),
               -1;
    cfg->epoch_order = run_epoch_order;
    cfg->epoch_order_ctx = dp;
    cfg->grad_reduce = run_grad_reduce;
    cfg->grad_reduce_ctx = dp;
    return 0;
}

// train_run(model, dataset=(ids, offsets, labels), state=dict, config=dict, callback=fn,
//           class_weights=None): the training loop; state: see STATE_FIELDS
static PyObject *py_train_run(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"model", "dataset", "state", "config", "callback", "class_weights", NULL};
    PyObject *model, *ids, *offsets, *labels, *state, *config, *callback, *weights = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O(OOO)O!O!O|O", kwlist, &model, &ids, &offsets, &labels,
                                     &PyDict_Type, &state, &PyDict_Type, &config, &callback, &weights))
        return NULL;
    lf_dataset d;
    lf_train_config cfg = {0};
    lf_train_state st = {0};
    if (dataset_arg(ids, offsets, labels, &d) < 0 || config_arg(config, &cfg) < 0 ||
        state_load(state, &st) < 0)
        return NULL;
    if (!PyCallable_Check(callback)) return PyErr_Format(PyExc_TypeError, "callback must be callable");
    PyObject *m = PyDict_GetItemString(state, "exp_avg"), *v = PyDict_GetItemString(state, "exp_avg_sq");
    if (!m || !v) return PyErr_Format(PyExc_KeyError, "loop state needs exp_avg and exp_avg_sq");
    PyArrayObject *am = array_arg(m, NPY_FLOAT32, 1, "exp_avg", 1),
                  *av = am ? array_arg(v, NPY_FLOAT32, 1, "exp_avg_sq", 1) : NULL;
    if (!av) return NULL;
    lf_model *mdl = model_arg(model, 1);
    if (!mdl) return NULL;
    PyObject *out = NULL;
    int64_t numel = 0;
    for (int i = 0; i < mdl->n_params; i++)
        numel += mdl->params[i].numel;
    if (weights != Py_None && !(cfg.class_weights = class_weights_arg(weights, mdl))) goto done;
    PyObject *loss_fn = PyDict_GetItemString(config, "compute_loss"); // borrowed; config outlives the run
    python_loss loss = {loss_fn, mdl->cfg.num_labels};
    if (loss_fn && loss_fn != Py_None) {
        if (!PyCallable_Check(loss_fn)) {
            PyErr_Format(PyExc_TypeError, "train config compute_loss must be callable or None");
            goto done;
        }
        cfg.batch_loss = run_python_loss;
        cfg.batch_loss_ctx = &loss;
    }
    data_parallel dp = {.model = model};
    if (data_parallel_arg(config, &dp, &cfg) < 0) goto done;
    if (PyArray_SIZE(am) != numel || PyArray_SIZE(av) != numel) {
        PyErr_Format(PyExc_ValueError, "exp_avg and exp_avg_sq need %lld elements (the trainable parameters)",
                     (long long)numel);
        goto done;
    }
    st.m = PyArray_DATA(am);
    st.v = PyArray_DATA(av);
    run_ctx ctx = {callback, state, &st};
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_train_run(mdl, &d, &cfg, &st, run_callback, &ctx);
    Py_END_ALLOW_THREADS PyObject *type, *value, *trace; // a callback's exception, kept over the store
    PyErr_Fetch(&type, &value, &trace);
    int stored = state_store(state, &st);
    if (type) PyErr_Restore(type, value, trace);
    if (rc == LF_EINTR && PyErr_Occurred())
        lf_error_clear();
    else if (rc != LF_OK)
        lf_raise_core_error();
    else if (stored == 0)
        out = Py_NewRef(Py_None);
done:
    lf_model_release(model);
    return out;
}

static PyMethodDef train_methods[] = {
    {"adamw_update", py_adamw_update, METH_VARARGS, "One AdamW update in place (torch.optim.AdamW's math)."},
    {"clip_grad_norm", py_clip_grad_norm, METH_VARARGS, "Clips float32 grads by their global L2 norm."},
    {"loss_scale_update", py_loss_scale_update, METH_VARARGS, "fp16's dynamic loss scale after an update."},
    {"lr_schedule_factor", py_lr_schedule_factor, METH_VARARGS, "transformers' LambdaLR factor."},
    {"updates_per_epoch", py_updates_per_epoch, METH_VARARGS, "(batches, update steps) per epoch."},
    {"predict", py_predict, METH_VARARGS, "Logits (and eval loss) of a dataset."},
    {"dataset_check", py_dataset_check, METH_VARARGS, "Validates a tokenized dataset against a model."},
    {"train_run", (PyCFunction)(void (*)(void))py_train_run, METH_VARARGS | METH_KEYWORDS,
     "train_run(model, (ids, offsets, labels), state, config, callback, class_weights=None): the loop."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_train(PyObject *module) {
    if (PyModule_AddFunctions(module, train_methods) < 0) return -1;
    return PyModule_AddObject(module, "LOSS_SCALE_INIT", PyFloat_FromDouble(LF_LOSS_SCALE_INIT));
}
