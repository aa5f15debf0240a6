// Training: AdamW, clipping and schedules (for parity tests), the training loop and
// prediction over an lf_trainable model (a lorafast._C.Model, through train/model_trainable.h,
// or a PyCapsule "lorafast.trainable"), and the test model bow_model.
#include "python/lf_python.h"

#include <string.h>

#include "core/error.h"
#include "train/adamw.h"
#include "train/bow_model.h"
#include "train/clip.h"
#include "train/loop.h"
#include "train/loss_scale.h"
#include "train/model_trainable.h"
#include "train/schedule.h"

static const char *CAPSULE = "lorafast.trainable";

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

// The lf_trainable behind obj: a "lorafast.trainable" capsule, or a lorafast._C.Model taken for
// this thread (training: for a training run) and seen through a table made for this call. Give it
// back with trainable_done.
static lf_trainable *trainable_arg(PyObject *obj, lf_trainable **made, int training) {
    *made = NULL;
    if (PyCapsule_CheckExact(obj)) return PyCapsule_GetPointer(obj, CAPSULE); // checks the name
    lf_model *m = lf_model_take(obj, training);
    if (m == NULL) return NULL;
    if (m->n_params == 0)
        PyErr_Format(PyExc_ValueError, "the model has no trainable parameters");
    else if (lf_model_check_ready(m) != LF_OK || (*made = model_trainable_create(m)) == NULL)
        lf_raise_core_error();
    if (*made == NULL) lf_model_release(obj);
    return *made;
}

// the end of a call that took obj with trainable_arg
static void trainable_done(PyObject *obj, lf_trainable *made) {
    if (made == NULL) return;
    model_trainable_free(made);
    lf_model_release(obj);
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

static void bow_capsule_free(PyObject *capsule) { bow_model_free(PyCapsule_GetPointer(capsule, CAPSULE)); }

// bow_model(vocab, dim, num_labels, pad_token_id, seed) -> capsule
static PyObject *py_bow_model(PyObject *self, PyObject *args) {
    (void)self;
    int vocab, dim, num_labels, pad;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "iiiiK", &vocab, &dim, &num_labels, &pad, &seed)) return NULL;
    lf_trainable *t = bow_model_create(vocab, dim, num_labels, pad, seed);
    if (!t) return lf_raise_core_error();
    return PyCapsule_New(t, CAPSULE, bow_capsule_free);
}

static PyObject *float_view(PyObject *owner, float *data, int64_t n) {
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *a = PyArray_SimpleNewFromData(1, dims, NPY_FLOAT32, data);
    if (!a) return NULL;
    Py_INCREF(owner);
    if (PyArray_SetBaseObject((PyArrayObject *)a, owner) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

// trainable_info(capsule) -> {num_labels, pad_token_id, vocab_size, params: [(name, data, grad, no_decay)]}
static PyObject *py_trainable_info(PyObject *self, PyObject *capsule) {
    (void)self;
    lf_trainable *t = PyCapsule_GetPointer(capsule, CAPSULE);
    if (!t) return NULL;
    PyObject *params = PyList_New(t->n_params);
    if (!params) return NULL;
    for (int i = 0; i < t->n_params; i++) {
        lf_trainable_param *p = &t->params[i];
        PyObject *data = float_view(capsule, p->data, p->numel),
                 *grad = data ? float_view(capsule, p->grad, p->numel) : NULL;
        PyObject *item =
            grad ? Py_BuildValue("(sNNO)", p->name, data, grad, p->no_decay ? Py_True : Py_False) : NULL;
        if (!item) {
            Py_XDECREF(data);
            Py_DECREF(params);
            return NULL;
        }
        PyList_SET_ITEM(params, i, item);
    }
    return Py_BuildValue("{s:i,s:i,s:i,s:N}", "num_labels", t->num_labels, "pad_token_id", t->pad_token_id,
                         "vocab_size", t->vocab_size, "params", params);
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

static const float *class_weights_arg(PyObject *obj, const lf_trainable *t) {
    if (obj == Py_None) return NULL;
    PyArrayObject *w = array_arg(obj, NPY_FLOAT32, 1, "class_weights", 0);
    if (!w) return NULL;
    if (PyArray_SIZE(w) != t->num_labels)
        return PyErr_Format(PyExc_ValueError, "class_weights has %lld values for num_labels=%d",
                            (long long)PyArray_SIZE(w), t->num_labels),
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
    lf_trainable *made, *t = trainable_arg(model, &made, 0);
    if (!t) return NULL;
    PyObject *logits = NULL, *out = NULL;
    const float *w = class_weights_arg(weights, t);
    npy_intp dims[2] = {(npy_intp)(d.n > 0 ? d.n : 0), t->num_labels};
    if ((weights == Py_None || w) && (logits = PyArray_ZEROS(2, dims, NPY_FLOAT32, 0))) {
        double loss = 0.0;
        int rc;
        Py_BEGIN_ALLOW_THREADS rc =
            lf_predict(t, &d, batch_size, w, PyArray_DATA((PyArrayObject *)logits), d.labels ? &loss : NULL);
        Py_END_ALLOW_THREADS if (rc != LF_OK) lf_raise_core_error();
        else if (d.labels) out = Py_BuildValue("(Od)", logits, loss);
        else out = Py_BuildValue("(OO)", logits, Py_None);
    }
    Py_XDECREF(logits);
    trainable_done(model, made);
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
    lf_trainable *made, *t = trainable_arg(model, &made, 0);
    if (!t) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_dataset_check(&d, what, t->vocab_size, t->num_labels);
    Py_END_ALLOW_THREADS trainable_done(model, made);
    if (rc != LF_OK) return lf_raise_core_error();
    Py_RETURN_NONE;
}

enum { N_COUNTERS = 7, N_LOSSES = 3 }; // the Trainer's counters and losses arrays

typedef struct {
    PyObject *callback;
    lf_train_state *state;
    // global_step, epoch, batch_in_epoch, micro_steps, last_log_step, skipped_steps, growth_tracker
    int64_t *counters;
    double *losses; // loss_total, loss_since_log, loss_scale
} run_ctx;

static void state_store(const run_ctx *c) {
    const lf_train_state *s = c->state;
    int64_t values[N_COUNTERS] = {s->global_step,   s->epoch,         s->batch_in_epoch, s->micro_steps,
                                  s->last_log_step, s->skipped_steps, s->growth_tracker};
    memcpy(c->counters, values, sizeof values);
    c->losses[0] = s->loss_total;
    c->losses[1] = s->loss_since_log;
    c->losses[2] = s->loss_scale;
}

// Runs the Python callback with the GIL: 0 go on, 1 stop (it returned True), -1 its exception
// (a KeyboardInterrupt from a pending SIGINT included).
static int run_callback(void *ctx, const lf_train_event *ev) {
    run_ctx *c = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    state_store(c);
    int r = -1;
    if (PyErr_CheckSignals() == 0) {
        PyObject *result = PyObject_CallFunction(
            c->callback, "{s:i,s:i,s:i,s:i,s:i,s:L,s:d,s:d,s:d,s:d}", "epoch_end", ev->epoch_end,
            "should_log", ev->should_log, "should_evaluate", ev->should_evaluate, "should_save",
            ev->should_save, "is_last", ev->is_last, "global_step", (long long)ev->global_step, "epoch",
            ev->epoch, "loss", ev->loss, "learning_rate", ev->learning_rate, "grad_norm", ev->grad_norm);
        if (result) {
            r = PyObject_IsTrue(result);
            Py_DECREF(result);
        }
    }
    PyGILState_Release(gil);
    return r;
}

// the caller's loss of a micro-batch, a Python callable compute_loss(ids, mask, labels, logits) ->
// (loss, dlogits): numpy copies in, a float and a (B, num_labels) array out
typedef struct {
    PyObject *fn;
    int num_labels;
} python_loss;

static PyObject *int64_copy(const int64_t *data, int ndim, npy_intp *dims) {
    PyObject *a = PyArray_SimpleNew(ndim, dims, NPY_INT64);
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

static int run_python_loss(void *ctx, const lf_padded_batch *batch, const float *logits, float *dlogits,
                           float *loss) {
    const python_loss *c = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    npy_intp padded[2] = {batch->B, batch->L}, rows[1] = {batch->B}, scores[2] = {batch->B, c->num_labels};
    PyObject *ids = int64_copy(batch->ids, 2, padded), *mask = int64_copy(batch->mask, 2, padded),
             *labels = int64_copy(batch->labels, 1, rows), *z = PyArray_SimpleNew(2, scores, NPY_FLOAT32);
    int r = -1;
    if (ids && mask && labels && z && PyErr_CheckSignals() == 0) {
        memcpy(PyArray_DATA((PyArrayObject *)z), logits, sizeof(float) * (size_t)batch->B * c->num_labels);
        PyObject *result = PyObject_CallFunctionObjArgs(c->fn, ids, mask, labels, z, NULL);
        if (result) r = take_loss_result(result, batch->B, c->num_labels, dlogits, loss);
        Py_XDECREF(result);
    }
    Py_XDECREF(ids);
    Py_XDECREF(mask);
    Py_XDECREF(labels);
    Py_XDECREF(z);
    PyGILState_Release(gil);
    return r == 0 ? LF_OK : lf_error(LF_EINTR, "compute_loss raised an exception");
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

// train_run(model, ids, offsets, labels, class_weights | None, m, v, counters, losses, config, callback)
static PyObject *py_train_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *model, *ids, *offsets, *labels, *weights, *m, *v, *counters, *losses, *config, *callback;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO", &model, &ids, &offsets, &labels, &weights, &m, &v, &counters,
                          &losses, &config, &callback))
        return NULL;
    lf_dataset d;
    lf_train_config cfg = {0};
    if (dataset_arg(ids, offsets, labels, &d) < 0 || config_arg(config, &cfg) < 0) return NULL;
    if (!PyCallable_Check(callback)) return PyErr_Format(PyExc_TypeError, "callback must be callable");
    PyArrayObject *am = array_arg(m, NPY_FLOAT32, 1, "m", 1),
                  *av = am ? array_arg(v, NPY_FLOAT32, 1, "v", 1) : NULL;
    PyArrayObject *ac = av ? array_arg(counters, NPY_INT64, 1, "counters", 1) : NULL;
    PyArrayObject *al = ac ? array_arg(losses, NPY_FLOAT64, 1, "losses", 1) : NULL;
    if (!al) return NULL;
    lf_trainable *made, *t = trainable_arg(model, &made, 1);
    if (!t) return NULL;
    PyObject *out = NULL;
    int64_t numel = 0;
    for (int i = 0; i < t->n_params; i++)
        numel += t->params[i].numel;
    if (weights != Py_None && !(cfg.class_weights = class_weights_arg(weights, t))) goto done;
    PyObject *loss_fn = PyDict_GetItemString(config, "compute_loss"); // borrowed; config outlives the run
    python_loss loss = {loss_fn, t->num_labels};
    if (loss_fn && loss_fn != Py_None) {
        if (!PyCallable_Check(loss_fn)) {
            PyErr_Format(PyExc_TypeError, "train config compute_loss must be callable or None");
            goto done;
        }
        cfg.batch_loss = run_python_loss;
        cfg.batch_loss_ctx = &loss;
    }
    if (PyArray_SIZE(am) != numel || PyArray_SIZE(av) != numel || PyArray_SIZE(ac) != N_COUNTERS ||
        PyArray_SIZE(al) != N_LOSSES) {
        PyErr_Format(PyExc_ValueError,
                     "m and v need %lld elements (the trainable parameters), counters %d, losses %d",
                     (long long)numel, N_COUNTERS, N_LOSSES);
        goto done;
    }
    int64_t *c = PyArray_DATA(ac);
    double *l = PyArray_DATA(al);
    lf_train_state st = {.global_step = c[0],
                         .epoch = c[1],
                         .batch_in_epoch = c[2],
                         .micro_steps = c[3],
                         .last_log_step = c[4],
                         .skipped_steps = c[5],
                         .growth_tracker = c[6],
                         .loss_total = l[0],
                         .loss_since_log = l[1],
                         .loss_scale = l[2],
                         .m = PyArray_DATA(am),
                         .v = PyArray_DATA(av)};
    run_ctx ctx = {callback, &st, c, l};
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = lf_train_run(t, &d, &cfg, &st, run_callback, &ctx);
    Py_END_ALLOW_THREADS state_store(&ctx);
    if (rc == LF_EINTR && PyErr_Occurred())
        lf_error_clear();
    else if (rc != LF_OK)
        lf_raise_core_error();
    else
        out = Py_NewRef(Py_None);
done:
    trainable_done(model, made);
    return out;
}

static PyMethodDef train_methods[] = {
    {"adamw_update", py_adamw_update, METH_VARARGS, "One AdamW update in place (torch.optim.AdamW's math)."},
    {"clip_grad_norm", py_clip_grad_norm, METH_VARARGS, "Clips float32 grads by their global L2 norm."},
    {"loss_scale_update", py_loss_scale_update, METH_VARARGS, "fp16's dynamic loss scale after an update."},
    {"lr_schedule_factor", py_lr_schedule_factor, METH_VARARGS, "transformers' LambdaLR factor."},
    {"updates_per_epoch", py_updates_per_epoch, METH_VARARGS, "(batches, update steps) per epoch."},
    {"bow_model", py_bow_model, METH_VARARGS, "A bag-of-words test model (a trainable capsule)."},
    {"trainable_info", py_trainable_info, METH_O, "Sizes and parameter views of a trainable capsule."},
    {"predict", py_predict, METH_VARARGS, "Logits (and eval loss) of a dataset."},
    {"dataset_check", py_dataset_check, METH_VARARGS, "Validates a tokenized dataset against a model."},
    {"train_run", py_train_run, METH_VARARGS, "Runs the training loop."},
    {NULL, NULL, 0, NULL},
};

int lf_bind_train(PyObject *module) {
    if (PyModule_AddFunctions(module, train_methods) < 0) return -1;
    return PyModule_AddObject(module, "LOSS_SCALE_INIT", PyFloat_FromDouble(LF_LOSS_SCALE_INIT));
}
