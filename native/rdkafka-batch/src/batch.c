/*
 * ferry-rdkafka-batch: a librdkafka producer whose records cross from JavaScript into C once per
 * chunk, not once per record. The rest of the librdkafka driver (admin, committed-topic reader)
 * uses @confluentinc/kafka-javascript; this addon links the very librdkafka that package built
 * (same shared object, loaded once per process).
 *
 * JavaScript API (see index.js / gateway/sinks/kafka/librdkafka/batch-producer.ts):
 *   create(config: Array<[key, value]>) -> handle
 *   produceChunk(h, batch, topic, partition, key|null, timestampMs, data, spans, offsets|null,
 *                lead, tail, flags|null) -> records enqueued (stops early when the queue is full)
 *   produceRecord(h, batch, topic, partition, key|null, value, timestampMs, headers) -> 0 | error code
 *   poll(h) -> serves delivery reports; returns nothing
 *   batchState(h, batch) -> [delivered, failed, firstErrorCode]
 *   outq(h) -> messages and requests not yet delivered
 *   errorName(code) -> librdkafka's name of an error code (e.g. "MSG_SIZE_TOO_LARGE")
 *   fatalError(h) -> [code, name, message] of the producer's fatal error (fenced, ...), or null
 *   logs(h) -> Array<[level, facility, message]> since the last call (librdkafka's log lines)
 *   initTransactions(h, timeoutMs), beginTransaction(h), commitTransaction(h, timeoutMs),
 *   abortTransaction(h, timeoutMs), flush(h, timeoutMs), destroy(h) -> Promise (thread pool)
 * Errors thrown or rejected carry { code (librdkafka numeric), name (e.g. "MSG_SIZE_TOO_LARGE"),
 * fatal, retriable, abortable }.
 *
 * Delivery reports are counted per batch id (a flush's request) in a table of BATCH_SLOTS slots;
 * the caller keeps fewer batches outstanding than that. A batch's error is its first failed
 * record's, unless that record was only purged (_PURGE_QUEUE / _PURGE_INFLIGHT: librdkafka
 * purges a failed transaction's other records): then a later record's real error replaces it.
 */
#include <node_api.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rdkafka.h"

#define BATCH_SLOTS 4096
#define LOG_RING 256
#define MAX_HEADERS 16

typedef struct {
  uint32_t id;
  int64_t delivered;
  int64_t failed;
  int first_error;
} batch_slot;

typedef struct {
  int level;
  char fac[32];
  char msg[480];
} log_line;

typedef struct {
  rd_kafka_t *rk;
  batch_slot slots[BATCH_SLOTS];
  /* delivery reports are served by poll() on the JS thread, and by flush/commit on the pool */
  pthread_mutex_t slot_lock;
  pthread_mutex_t log_lock;
  log_line logs[LOG_RING];
  unsigned log_head, log_count;
  int destroyed;
} producer;

#define CHECK(env, call)                                        \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      napi_throw_error((env), NULL, "ferry-rdkafka-batch: " #call " failed"); \
      return NULL;                                              \
    }                                                           \
  } while (0)

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  producer *p = (producer *)opaque;
  uint32_t id = (uint32_t)(uintptr_t)m->_private;
  batch_slot *s = &p->slots[id % BATCH_SLOTS];
  pthread_mutex_lock(&p->slot_lock);
  if (s->id == id) { /* else a batch the caller forgot: nothing to count */
    if (m->err) {
      /* a record purged (its transaction failed) names no cause: keep looking for the real one */
      int purged = s->first_error == RD_KAFKA_RESP_ERR__PURGE_QUEUE || s->first_error == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
      if (s->failed++ == 0 || purged) s->first_error = m->err;
    } else {
      s->delivered++;
    }
  }
  pthread_mutex_unlock(&p->slot_lock);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  producer *p = (producer *)rd_kafka_opaque(rk);
  if (p == NULL) return;
  pthread_mutex_lock(&p->log_lock);
  log_line *l = &p->logs[(p->log_head + p->log_count) % LOG_RING];
  if (p->log_count == LOG_RING) p->log_head = (p->log_head + 1) % LOG_RING;
  else p->log_count++;
  l->level = level;
  snprintf(l->fac, sizeof l->fac, "%s", fac);
  snprintf(l->msg, sizeof l->msg, "%s", buf);
  pthread_mutex_unlock(&p->log_lock);
}

static napi_value make_error(napi_env env, int code, const char *name, const char *text, int fatal, int retriable, int abortable) {
  napi_value msg, err, v;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_create_int32(env, code, &v);
  napi_set_named_property(env, err, "code", v);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "name", v);
  napi_get_boolean(env, fatal, &v);
  napi_set_named_property(env, err, "fatal", v);
  napi_get_boolean(env, retriable, &v);
  napi_set_named_property(env, err, "retriable", v);
  napi_get_boolean(env, abortable, &v);
  napi_set_named_property(env, err, "abortable", v);
  return err;
}

static void throw_code(napi_env env, rd_kafka_resp_err_t e, const char *what) {
  char text[512];
  snprintf(text, sizeof text, "%s: %s", what, rd_kafka_err2str(e));
  napi_throw(env, make_error(env, e, rd_kafka_err2name(e), text, 0, 0, 0));
}

static producer *unwrap(napi_env env, napi_value v) {
  producer *p = NULL;
  if (napi_get_value_external(env, v, (void **)&p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "ferry-rdkafka-batch: not a producer handle");
    return NULL;
  }
  if (p->destroyed) {
    napi_throw_error(env, NULL, "ferry-rdkafka-batch: the producer was destroyed");
    return NULL;
  }
  return p;
}

/* A JS string into buf (truncated to size-1); returns its length or -1. */
static int get_str(napi_env env, napi_value v, char *buf, size_t size) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &n) != napi_ok) return -1;
  return (int)n;
}

static int get_buffer(napi_env env, napi_value v, const char **data, size_t *len) {
  bool is = false;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return -1;
  return napi_get_buffer_info(env, v, (void **)data, len) == napi_ok ? 0 : -1;
}

static void finalize_producer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  producer *p = (producer *)data;
  if (!p->destroyed && p->rk) rd_kafka_destroy(p->rk);
  pthread_mutex_destroy(&p->log_lock);
  pthread_mutex_destroy(&p->slot_lock);
  free(p);
}

static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t n = 0;
  if (argc < 1 || napi_get_array_length(env, argv[0], &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "create: expected an array of [key, value] pairs");
    return NULL;
  }
  producer *p = calloc(1, sizeof *p);
  pthread_mutex_init(&p->log_lock, NULL);
  pthread_mutex_init(&p->slot_lock, NULL);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[512], key[256], value[4096];
  for (uint32_t i = 0; i < n; i++) {
    napi_value pair, k, v;
    napi_get_element(env, argv[0], i, &pair);
    napi_get_element(env, pair, 0, &k);
    napi_get_element(env, pair, 1, &v);
    if (get_str(env, k, key, sizeof key) < 0 || get_str(env, v, value, sizeof value) < 0) {
      rd_kafka_conf_destroy(conf);
      free(p);
      napi_throw_type_error(env, NULL, "create: config keys and values must be strings");
      return NULL;
    }
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      free(p);
      char text[1024];
      snprintf(text, sizeof text, "librdkafka refused property %s: %s", key, errstr);
      napi_throw(env, make_error(env, RD_KAFKA_RESP_ERR__INVALID_ARG, "_INVALID_ARG", text, 0, 0, 0));
      return NULL;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_log_cb(conf, on_log);
  rd_kafka_conf_set_opaque(conf, p);
  p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (p->rk == NULL) {
    free(p);
    napi_throw(env, make_error(env, RD_KAFKA_RESP_ERR__INVALID_ARG, "_INVALID_ARG", errstr, 0, 0, 0));
    return NULL;
  }
  napi_value ext;
  CHECK(env, napi_create_external(env, p, finalize_producer, NULL, &ext));
  return ext;
}

typedef struct {
  const char *name;
  const char *value;
  size_t len;
} header;

static int get_headers(napi_env env, napi_value arr, header *out, char names[][64], int max) {
  uint32_t n = 0;
  bool is = false;
  napi_is_array(env, arr, &is);
  if (!is) return 0;
  napi_get_array_length(env, arr, &n);
  if ((int)n > max) n = (uint32_t)max;
  for (uint32_t i = 0; i < n; i++) {
    napi_value pair, k, v;
    napi_get_element(env, arr, i, &pair);
    napi_get_element(env, pair, 0, &k);
    napi_get_element(env, pair, 1, &v);
    if (get_str(env, k, names[i], 64) < 0 || get_buffer(env, v, &out[i].value, &out[i].len) < 0) return -1;
    out[i].name = names[i];
  }
  return (int)n;
}

/* A file offset (a non-negative integer below 2^53, as a double) in decimal; returns its length. */
static int decimal(char *out, double value) {
  uint64_t v = value > 0 ? (uint64_t)value : 0;
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static void add_headers(rd_kafka_headers_t *hs, const header *h, int n) {
  for (int i = 0; i < n; i++) rd_kafka_header_add(hs, h[i].name, -1, h[i].value, (ssize_t)h[i].len);
}

/* Starts counting a batch: its slot is reset. */
static void slot_for(producer *p, uint32_t id) {
  batch_slot *s = &p->slots[id % BATCH_SLOTS];
  pthread_mutex_lock(&p->slot_lock);
  if (s->id != id) {
    s->id = id;
    s->delivered = 0;
    s->failed = 0;
    s->first_error = 0;
  }
  pthread_mutex_unlock(&p->slot_lock);
}

/* The arguments both produce calls start with: (h, batch, topic, partition, key|null). */
typedef struct {
  producer *p;
  uint32_t batch;
  char topic[512];
  int32_t partition;
  const char *key;
  size_t key_len;
} produce_head;

static int get_head(napi_env env, napi_value *argv, const char *fn, produce_head *h) {
  h->p = unwrap(env, argv[0]);
  if (h->p == NULL) return -1;
  napi_valuetype kt;
  h->key = NULL;
  h->key_len = 0;
  if (napi_get_value_uint32(env, argv[1], &h->batch) != napi_ok || get_str(env, argv[2], h->topic, sizeof h->topic) < 0 ||
      napi_get_value_int32(env, argv[3], &h->partition) != napi_ok) {
    char text[128];
    snprintf(text, sizeof text, "%s: (handle, batch, topic, partition, key, ...) expected", fn);
    napi_throw_type_error(env, NULL, text);
    return -1;
  }
  napi_typeof(env, argv[4], &kt);
  if (kt != napi_null && kt != napi_undefined && get_buffer(env, argv[4], &h->key, &h->key_len) < 0) {
    char text[128];
    snprintf(text, sizeof text, "%s: key must be a Buffer or null", fn);
    napi_throw_type_error(env, NULL, text);
    return -1;
  }
  return 0;
}

static napi_value produce_chunk(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 12) {
    napi_throw_type_error(env, NULL, "produceChunk: 12 arguments expected");
    return NULL;
  }
  produce_head head;
  if (get_head(env, argv, "produceChunk", &head) < 0) return NULL;
  producer *p = head.p;
  uint32_t batch = head.batch;
  int32_t partition = head.partition;
  const char *key = head.key;
  size_t key_len = head.key_len;
  const char *topic = head.topic;
  int64_t ts;
  napi_valuetype kt;
  CHECK(env, napi_get_value_int64(env, argv[5], &ts));
  const char *data;
  size_t data_len;
  if (get_buffer(env, argv[6], &data, &data_len) < 0) {
    napi_throw_type_error(env, NULL, "produceChunk: data must be a Buffer");
    return NULL;
  }
  napi_typedarray_type t;
  size_t nspans, noffsets = 0, nflags = 0, bo;
  void *spans_p, *offsets_p = NULL, *flags_p = NULL;
  napi_value ab;
  CHECK(env, napi_get_typedarray_info(env, argv[7], &t, &nspans, &spans_p, &ab, &bo));
  if (t != napi_int32_array || nspans % 2 != 0) {
    napi_throw_type_error(env, NULL, "produceChunk: spans must be an Int32Array of (start, length) pairs");
    return NULL;
  }
  napi_typeof(env, argv[8], &kt);
  if (kt != napi_null) {
    CHECK(env, napi_get_typedarray_info(env, argv[8], &t, &noffsets, &offsets_p, &ab, &bo));
    if (t != napi_float64_array) {
      napi_throw_type_error(env, NULL, "produceChunk: offsets must be a Float64Array or null");
      return NULL;
    }
  }
  header lead[MAX_HEADERS], tail[MAX_HEADERS];
  char lead_names[MAX_HEADERS][64], tail_names[MAX_HEADERS][64];
  int nlead = get_headers(env, argv[9], lead, lead_names, MAX_HEADERS);
  int ntail = get_headers(env, argv[10], tail, tail_names, MAX_HEADERS);
  if (nlead < 0 || ntail < 0) {
    napi_throw_type_error(env, NULL, "produceChunk: headers must be [name, Buffer] pairs");
    return NULL;
  }
  /* flags: null, or an Array (one entry per record) of null or a Buffer holding the ferry.flags value */
  napi_value flags_arr = NULL;
  napi_typeof(env, argv[11], &kt);
  if (kt != napi_null) {
    flags_arr = argv[11];
    uint32_t fl;
    napi_get_array_length(env, flags_arr, &fl);
    nflags = fl;
  }
  (void)flags_p;
  const int32_t *spans = (const int32_t *)spans_p;
  const double *offsets = (const double *)offsets_p;
  size_t n = nspans / 2;
  slot_for(p, batch);
  /* one topic handle for the whole chunk, not a lookup by name per record */
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
  if (rkt == NULL) {
    throw_code(env, rd_kafka_last_error(), "produce");
    return NULL;
  }
  size_t done = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t start = spans[2 * i], len = spans[2 * i + 1];
    if (start < 0 || len < 0 || (size_t)start + (size_t)len > data_len) {
      rd_kafka_topic_destroy(rkt);
      napi_throw_range_error(env, NULL, "produceChunk: a span lies outside data");
      return NULL;
    }
    rd_kafka_headers_t *hs = rd_kafka_headers_new((size_t)(nlead + ntail + 2));
    add_headers(hs, lead, nlead);
    if (offsets != NULL && i < noffsets) {
      char ob[24];
      int ol = decimal(ob, offsets[i]);
      rd_kafka_header_add(hs, "ferry.offset", 12, ob, ol);
    }
    add_headers(hs, tail, ntail);
    if (flags_arr != NULL && i < nflags) {
      napi_value fv;
      const char *f;
      size_t fl;
      napi_get_element(env, flags_arr, (uint32_t)i, &fv);
      if (get_buffer(env, fv, &f, &fl) == 0) rd_kafka_header_add(hs, "ferry.flags", -1, f, (ssize_t)fl);
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE((void *)(data + start), (size_t)len), RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(ts),
        RD_KAFKA_V_HEADERS(hs), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)batch), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_destroy(hs);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) break; /* the caller polls and sends the rest */
      rd_kafka_topic_destroy(rkt);
      throw_code(env, e, "produce");
      return NULL;
    }
    done++;
  }
  rd_kafka_topic_destroy(rkt);
  napi_value r;
  CHECK(env, napi_create_int64(env, (int64_t)done, &r));
  return r;
}

static napi_value produce_record(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "produceRecord: 8 arguments expected");
    return NULL;
  }
  produce_head head;
  if (get_head(env, argv, "produceRecord", &head) < 0) return NULL;
  producer *p = head.p;
  uint32_t batch = head.batch;
  int32_t partition = head.partition;
  const char *key = head.key, *value = NULL;
  size_t key_len = head.key_len, value_len = 0;
  const char *topic = head.topic;
  int64_t ts;
  if (get_buffer(env, argv[5], &value, &value_len) < 0) {
    napi_throw_type_error(env, NULL, "produceRecord: value must be a Buffer");
    return NULL;
  }
  CHECK(env, napi_get_value_int64(env, argv[6], &ts));
  /* headers: Array<[name, Buffer]>, any number */
  uint32_t nh = 0;
  bool is = false;
  napi_is_array(env, argv[7], &is);
  if (is) napi_get_array_length(env, argv[7], &nh);
  rd_kafka_headers_t *hs = rd_kafka_headers_new(nh);
  for (uint32_t i = 0; i < nh; i++) {
    napi_value pair, k, v;
    char name[256];
    const char *hv;
    size_t hl;
    napi_get_element(env, argv[7], i, &pair);
    napi_get_element(env, pair, 0, &k);
    napi_get_element(env, pair, 1, &v);
    if (get_str(env, k, name, sizeof name) < 0 || get_buffer(env, v, &hv, &hl) < 0) {
      rd_kafka_headers_destroy(hs);
      napi_throw_type_error(env, NULL, "produceRecord: headers must be [name, Buffer] pairs");
      return NULL;
    }
    rd_kafka_header_add(hs, name, -1, hv, (ssize_t)hl);
  }
  slot_for(p, batch);
  rd_kafka_resp_err_t e = rd_kafka_producev(
      p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(ts),
      RD_KAFKA_V_HEADERS(hs), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)batch), RD_KAFKA_V_END);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_headers_destroy(hs);
  napi_value r;
  CHECK(env, napi_create_int32(env, e, &r));
  return r;
}

static napi_value poll_(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  producer *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  rd_kafka_poll(p->rk, 0);
  return NULL;
}

static napi_value batch_state(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  producer *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  uint32_t id;
  CHECK(env, napi_get_value_uint32(env, argv[1], &id));
  batch_slot *s = &p->slots[id % BATCH_SLOTS];
  napi_value r, a, b, c;
  pthread_mutex_lock(&p->slot_lock);
  int64_t delivered = s->id == id ? s->delivered : 0, failed = s->id == id ? s->failed : 0;
  int first = s->id == id ? s->first_error : 0;
  pthread_mutex_unlock(&p->slot_lock);
  napi_create_array_with_length(env, 3, &r);
  napi_create_int64(env, delivered, &a);
  napi_create_int64(env, failed, &b);
  napi_create_int32(env, first, &c);
  napi_set_element(env, r, 0, a);
  napi_set_element(env, r, 1, b);
  napi_set_element(env, r, 2, c);
  return r;
}

static napi_value outq(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  producer *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  napi_value r;
  napi_create_int32(env, rd_kafka_outq_len(p->rk), &r);
  return r;
}

static napi_value logs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  producer *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  log_line copy[LOG_RING];
  unsigned n;
  pthread_mutex_lock(&p->log_lock);
  n = p->log_count;
  for (unsigned i = 0; i < n; i++) copy[i] = p->logs[(p->log_head + i) % LOG_RING];
  p->log_head = 0;
  p->log_count = 0;
  pthread_mutex_unlock(&p->log_lock);
  napi_value r;
  napi_create_array_with_length(env, n, &r);
  for (unsigned i = 0; i < n; i++) {
    napi_value e, a, b, c;
    napi_create_array_with_length(env, 3, &e);
    napi_create_int32(env, copy[i].level, &a);
    napi_create_string_utf8(env, copy[i].fac, NAPI_AUTO_LENGTH, &b);
    napi_create_string_utf8(env, copy[i].msg, NAPI_AUTO_LENGTH, &c);
    napi_set_element(env, e, 0, a);
    napi_set_element(env, e, 1, b);
    napi_set_element(env, e, 2, c);
    napi_set_element(env, r, i, e);
  }
  return r;
}

/* errorName(code) -> librdkafka's name of an error code, e.g. "MSG_SIZE_TOO_LARGE", "_MSG_TIMED_OUT" */
static napi_value error_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t code = 0;
  CHECK(env, napi_get_value_int32(env, argv[0], &code));
  napi_value r;
  napi_create_string_utf8(env, rd_kafka_err2name((rd_kafka_resp_err_t)code), NAPI_AUTO_LENGTH, &r);
  return r;
}

/* fatalError(h) -> [code, name, message] of the producer's fatal error, or null when it has none */
static napi_value fatal_error(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  producer *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  char text[512];
  rd_kafka_resp_err_t code = rd_kafka_fatal_error(p->rk, text, sizeof text);
  napi_value r, a, b, c;
  if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
    napi_get_null(env, &r);
    return r;
  }
  napi_create_array_with_length(env, 3, &r);
  napi_create_int32(env, code, &a);
  napi_create_string_utf8(env, rd_kafka_err2name(code), NAPI_AUTO_LENGTH, &b);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &c);
  napi_set_element(env, r, 0, a);
  napi_set_element(env, r, 1, b);
  napi_set_element(env, r, 2, c);
  return r;
}

/* --- blocking calls, run on the thread pool --------------------------------------------------- */

enum op { OP_INIT, OP_BEGIN, OP_COMMIT, OP_ABORT, OP_FLUSH, OP_DESTROY };

typedef struct {
  producer *p;
  enum op op;
  int timeout_ms;
  rd_kafka_error_t *error;
  rd_kafka_resp_err_t err;
  napi_deferred deferred;
  napi_async_work work;
} call;

static void run_call(napi_env env, void *data) {
  (void)env;
  call *c = (call *)data;
  rd_kafka_t *rk = c->p->rk;
  switch (c->op) {
    case OP_INIT: c->error = rd_kafka_init_transactions(rk, c->timeout_ms); break;
    case OP_BEGIN: c->error = rd_kafka_begin_transaction(rk); break;
    case OP_COMMIT: c->error = rd_kafka_commit_transaction(rk, c->timeout_ms); break;
    case OP_ABORT: c->error = rd_kafka_abort_transaction(rk, c->timeout_ms); break;
    case OP_FLUSH: c->err = rd_kafka_flush(rk, c->timeout_ms); break;
    case OP_DESTROY:
      rd_kafka_flush(rk, c->timeout_ms);
      rd_kafka_destroy(rk);
      break;
  }
}

static void done_call(napi_env env, napi_status status, void *data) {
  call *c = (call *)data;
  (void)status;
  if (c->error != NULL) {
    rd_kafka_resp_err_t code = rd_kafka_error_code(c->error);
    napi_value err = make_error(env, code, rd_kafka_error_name(c->error), rd_kafka_error_string(c->error), rd_kafka_error_is_fatal(c->error),
                                rd_kafka_error_is_retriable(c->error), rd_kafka_error_txn_requires_abort(c->error));
    rd_kafka_error_destroy(c->error);
    napi_reject_deferred(env, c->deferred, err);
  } else if (c->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    char text[256];
    snprintf(text, sizeof text, "flush: %s", rd_kafka_err2str(c->err));
    napi_reject_deferred(env, c->deferred, make_error(env, c->err, rd_kafka_err2name(c->err), text, 0, 1, 0));
  } else {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, c->deferred, undef);
  }
  napi_delete_async_work(env, c->work);
  free(c);
}

static napi_value start_call(napi_env env, napi_callback_info info, enum op op) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  producer *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  int32_t timeout = 30000;
  if (argc > 1) napi_get_value_int32(env, argv[1], &timeout);
  call *c = calloc(1, sizeof *c);
  c->p = p;
  c->op = op;
  c->timeout_ms = timeout;
  if (op == OP_DESTROY) p->destroyed = 1;
  napi_value promise, name;
  CHECK(env, napi_create_promise(env, &c->deferred, &promise));
  napi_create_string_utf8(env, "ferry-rdkafka-batch", NAPI_AUTO_LENGTH, &name);
  CHECK(env, napi_create_async_work(env, NULL, name, run_call, done_call, c, &c->work));
  CHECK(env, napi_queue_async_work(env, c->work));
  return promise;
}

static napi_value init_txn(napi_env env, napi_callback_info info) { return start_call(env, info, OP_INIT); }
static napi_value begin_txn(napi_env env, napi_callback_info info) { return start_call(env, info, OP_BEGIN); }
static napi_value commit_txn(napi_env env, napi_callback_info info) { return start_call(env, info, OP_COMMIT); }
static napi_value abort_txn(napi_env env, napi_callback_info info) { return start_call(env, info, OP_ABORT); }
static napi_value flush_(napi_env env, napi_callback_info info) { return start_call(env, info, OP_FLUSH); }
static napi_value destroy_(napi_env env, napi_callback_info info) { return start_call(env, info, OP_DESTROY); }

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      {"create", 0, create, 0, 0, 0, napi_default, 0},
      {"produceChunk", 0, produce_chunk, 0, 0, 0, napi_default, 0},
      {"produceRecord", 0, produce_record, 0, 0, 0, napi_default, 0},
      {"poll", 0, poll_, 0, 0, 0, napi_default, 0},
      {"batchState", 0, batch_state, 0, 0, 0, napi_default, 0},
      {"outq", 0, outq, 0, 0, 0, napi_default, 0},
      {"errorName", 0, error_name, 0, 0, 0, napi_default, 0},
      {"fatalError", 0, fatal_error, 0, 0, 0, napi_default, 0},
      {"logs", 0, logs, 0, 0, 0, napi_default, 0},
      {"initTransactions", 0, init_txn, 0, 0, 0, napi_default, 0},
      {"beginTransaction", 0, begin_txn, 0, 0, 0, napi_default, 0},
      {"commitTransaction", 0, commit_txn, 0, 0, 0, napi_default, 0},
      {"abortTransaction", 0, abort_txn, 0, 0, 0, napi_default, 0},
      {"flush", 0, flush_, 0, 0, 0, napi_default, 0},
      {"destroy", 0, destroy_, 0, 0, 0, napi_default, 0},
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
