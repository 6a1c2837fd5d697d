/* router: decides where each client command runs, and merges the replies
 * of commands split across owners.
 *
 * Runs on the client I/O thread that owns the connection. A command with
 * no keys runs here. A keyed command runs here when this node serves all
 * its keys (an owner for reads, the primary for writes); otherwise it is
 * forwarded whole to the one node that does, or split into one part per
 * node, sent in parallel and merged in request order (a "fan-out"). Parts
 * that go to peers travel as REQUEST messages through the cluster actor;
 * their replies come back through router_on_reply, and a part that gets no
 * reply within ROUTER_TIMEOUT_MS fails with an error.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "cluster.h"
#include "hash.h"
#include "log.h"
#include "msg.h"
#include "server_int.h"

#define ROUTER_BUCKETS 4096
#define REQ_SEQ_MASK ((1ull << REQ_ID_THREAD_SHIFT) - 1)

typedef struct part {
    char target[PIPE_ID_BYTES]; /* node id, for errors */
    bool remote;
    bool done;
    uint64_t req_id;
    pc_buf_t result;            /* one whole RESP value */
    uint32_t *positions;        /* indexes into the command's key list */
    size_t npos;
} part_t;

typedef struct fanout {
    struct fanout *prev;
    struct fanout *next;
    conn_t *conn;
    slot_t *slot;
    const cmd_def_t *def;
    cmd_merge_t merge;
    part_t *parts;
    size_t nparts;
    size_t remaining;
    size_t nkeys;
    int64_t deadline_ms;
    int msetnx_phase;           /* 0, or 1 (EXISTS) and 2 (MSET) */
    cmd_arg_t *saved_argv;      /* MSETNX: the arguments, kept for phase 2 */
    int saved_argc;
    uint32_t *saved_targets;    /* MSETNX: member index of each key */
} fanout_t;

typedef struct pending {
    uint64_t req_id;
    fanout_t *fanout;
    size_t part;
    struct pending *next;
} pending_t;

struct router {
    io_thread_t *io;
    uint64_t next_seq;
    fanout_t *fanouts;          /* every fan-out in progress */
    pending_t *buckets[ROUTER_BUCKETS];
    pc_buf_t scratch;
    msg_bytes_t *margs;
    size_t margs_cap;
};

static void finish(router_t *r, fanout_t *f);

/* ---- pending request table ---- */

static void pending_add(router_t *r, uint64_t req_id, fanout_t *f, size_t part)
{
    pending_t *p = malloc(sizeof *p);
    if (p == NULL) {
        /* Without an entry the reply is dropped and the part times out. */
        return;
    }
    size_t b = req_id % ROUTER_BUCKETS;
    *p = (pending_t){.req_id = req_id, .fanout = f, .part = part, .next = r->buckets[b]};
    r->buckets[b] = p;
}

static bool pending_take(router_t *r, uint64_t req_id, fanout_t **f, size_t *part)
{
    pending_t **at = &r->buckets[req_id % ROUTER_BUCKETS];
    for (; *at != NULL; at = &(*at)->next) {
        if ((*at)->req_id == req_id) {
            pending_t *p = *at;
            *f = p->fanout;
            *part = p->part;
            *at = p->next;
            free(p);
            return true;
        }
    }
    return false;
}

/* ---- local execution and replication ---- */

/* Sends an entry a handler wrote here to the other nodes that hold its
 * key. Called with the key's lock held, inside a read-side section. */
static void io_replicate(void *arg, const store_entry_t *entry)
{
    router_t *r = arg;
    const view_t *view = rcu_dereference(r->io->node->view);
    if (view == NULL)
        return;

    uint32_t holders[2 * VIEW_MAX_REPLICAS];
    size_t n = view_holders(view, entry->hash, holders);
    char ids[2 * VIEW_MAX_REPLICAS][PIPE_ID_BYTES];
    uint32_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if ((int)holders[i] == view->self)
            continue;
        memset(ids[count], 0, PIPE_ID_BYTES);
        snprintf(ids[count], PIPE_ID_BYTES, "%s", view->members[holders[i]].id);
        count++;
    }
    if (count == 0)
        return;

    pipe_hdr_t hdr = {.kind = PIPE_REPL, .target_count = count};
    pipe_repl_meta_t meta = {.hlc = entry->version.hlc, .origin = entry->version.origin,
                             .expire_ms = entry->expire_ms, .flags = entry->flags};
    void *pipe = r->io->pipe;
    zmq_send(pipe, &hdr, sizeof hdr, ZMQ_SNDMORE);
    zmq_send(pipe, ids, (size_t)count * PIPE_ID_BYTES, ZMQ_SNDMORE);
    zmq_send(pipe, entry->key, entry->key_len, ZMQ_SNDMORE);
    zmq_send(pipe, entry->value, entry->value_len, ZMQ_SNDMORE);
    zmq_send(pipe, &meta, sizeof meta, 0);
    r->io->pipe_dirty = true;
}

static void run_local(router_t *r, conn_t *conn, const cmd_def_t *def, int argc,
                      const cmd_arg_t *argv, pc_buf_t *out)
{
    node_t *node = r->io->node;
    cmd_ctx_t ctx = {
        .store = node->store, .clock = &node->clock, .origin = node->origin,
        .now_ms = (int64_t)pc_time_ms(), .out = out,
        .replicate = io_replicate, .replicate_arg = r,
        .node = node, .client = conn ? &conn->info : NULL,
    };
    def->fn(&ctx, argc, argv);
}

/* ---- forwarding ---- */

static uint64_t next_req_id(router_t *r)
{
    r->next_seq = (r->next_seq + 1) & REQ_SEQ_MASK;
    if (r->next_seq == 0)
        r->next_seq = 1;
    return ((uint64_t)r->io->index << REQ_ID_THREAD_SHIFT) | r->next_seq;
}

/* Other owners of a read, tried in order when the target is not
 * connected. */
typedef struct alternates {
    uint32_t count;
    uint32_t members[PIPE_MAX_ALTERNATES];
} alternates_t;

/* Sends argv to target through the actor. Returns 0, or -1 when the
 * request could not be encoded (too large for a peer message). */
static int forward(router_t *r, const view_t *view, const char *target,
                   const alternates_t *alternates, uint64_t req_id, int argc,
                   const cmd_arg_t *argv)
{
    if ((size_t)argc > r->margs_cap) {
        msg_bytes_t *margs = realloc(r->margs, (size_t)argc * sizeof *margs);
        if (margs == NULL)
            return -1;
        r->margs = margs;
        r->margs_cap = (size_t)argc;
    }
    for (int i = 0; i < argc; i++)
        r->margs[i] = (msg_bytes_t){argv[i].ptr, argv[i].len};

    const char *self = r->io->node->cfg.node_id;
    msg_t msg = {.type = MSG_REQUEST, .id = req_id, .args = r->margs,
                 .arg_count = (size_t)argc, .from = {self, strlen(self)}};
    buf_reset(&r->scratch);
    if (msg_encode(&msg, &r->scratch) != PC_OK)
        return -1;

    pipe_hdr_t hdr = {.kind = PIPE_FORWARD, .req_id = req_id};
    snprintf(hdr.target, sizeof hdr.target, "%s", target);
    for (uint32_t i = 0; alternates != NULL && i < alternates->count; i++) {
        snprintf(hdr.alternates[i], PIPE_ID_BYTES, "%s",
                 view->members[alternates->members[i]].id);
        hdr.alternate_count++;
    }
    zmq_send(r->io->pipe, &hdr, sizeof hdr, ZMQ_SNDMORE);
    zmq_send(r->io->pipe, r->scratch.data, r->scratch.len, 0);
    r->io->pipe_dirty = true;
    return 0;
}

/* ---- fan-outs ---- */

static fanout_t *fanout_new(router_t *r, conn_t *conn, const cmd_def_t *def,
                            cmd_merge_t merge, size_t nparts, size_t nkeys)
{
    fanout_t *f = calloc(1, sizeof *f);
    part_t *parts = calloc(nparts, sizeof *parts);
    slot_t *slot = (f && parts) ? conn_defer(conn) : NULL;
    if (slot == NULL) {
        free(f);
        free(parts);
        return NULL;
    }
    f->conn = conn;
    f->slot = slot;
    f->def = def;
    f->merge = merge;
    f->parts = parts;
    f->nparts = nparts;
    f->nkeys = nkeys;
    f->deadline_ms = (int64_t)pc_time_ms() + ROUTER_TIMEOUT_MS;
    for (size_t i = 0; i < nparts; i++)
        buf_init(&parts[i].result, CONN_OUTPUT_MAX_BYTES);
    conn->refs++;

    f->next = r->fanouts;
    if (r->fanouts)
        r->fanouts->prev = f;
    r->fanouts = f;
    return f;
}

static void fanout_free(router_t *r, fanout_t *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        r->fanouts = f->next;
    if (f->next)
        f->next->prev = f->prev;

    for (size_t i = 0; i < f->nparts; i++) {
        buf_fini(&f->parts[i].result);
        free(f->parts[i].positions);
    }
    free(f->parts);
    free(f->saved_argv);
    free(f->saved_targets);
    free(f);
}

/* Starts one part: runs it here or forwards it. */
static void start_part(router_t *r, fanout_t *f, size_t index, const view_t *view,
                       uint32_t member, const alternates_t *alternates, int argc,
                       const cmd_arg_t *argv)
{
    part_t *part = &f->parts[index];
    snprintf(part->target, sizeof part->target, "%s", view->members[member].id);

    if ((int)member == view->self) {
        const cmd_def_t *def = cmd_lookup(argv[0].ptr, argv[0].len);
        run_local(r, NULL, def, argc, argv, &part->result);
        part->done = true;
        f->remaining--;
        return;
    }

    part->remote = true;
    part->req_id = next_req_id(r);
    if (forward(r, view, part->target, alternates, part->req_id, argc, argv) != 0) {
        resp_add_error(&part->result, "ERR request too large to forward to a peer");
        part->done = true;
        f->remaining--;
        return;
    }
    pending_add(r, part->req_id, f, index);
}

/* Where a command's keys are: argv[first + i * step] is key i, and with
 * values set the step - 1 arguments after each key go with it (MSET). */
typedef struct key_layout {
    int first;
    int step;
    bool values;
} key_layout_t;

static int key_index(const key_layout_t *layout, size_t i)
{
    return layout->first + (int)i * layout->step;
}

/* Builds a part's arguments: the command name, then each of its keys
 * with the values that go with them. */
static cmd_arg_t *part_argv(const key_layout_t *layout, const cmd_arg_t *name,
                            const cmd_arg_t *argv, const part_t *part, int *argc)
{
    size_t per_key = layout->values ? (size_t)layout->step : 1;
    cmd_arg_t *out = malloc((1 + part->npos * per_key) * sizeof *out);
    if (out == NULL)
        return NULL;
    out[0] = *name;
    size_t n = 1;
    for (size_t j = 0; j < part->npos; j++) {
        int at = key_index(layout, part->positions[j]);
        for (size_t k = 0; k < per_key; k++)
            out[n++] = argv[at + (int)k];
    }
    *argc = (int)n;
    return out;
}

/* Groups keys by target member into f's parts. Returns -1 on no memory. */
static int group_keys(fanout_t *f, const uint32_t *targets, uint32_t *part_member)
{
    size_t nparts = 0;
    for (size_t i = 0; i < f->nkeys; i++) {
        size_t p = 0;
        while (p < nparts && part_member[p] != targets[i])
            p++;
        if (p == nparts)
            part_member[nparts++] = targets[i];
        part_t *part = &f->parts[p];
        if (part->positions == NULL) {
            part->positions = malloc(f->nkeys * sizeof *part->positions);
            if (part->positions == NULL)
                return -1;
        }
        part->positions[part->npos++] = (uint32_t)i;
    }
    return 0;
}

/* Returns how many distinct members targets names. */
static size_t count_distinct(const uint32_t *targets, size_t n)
{
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < i && targets[j] != targets[i])
            j++;
        distinct += j == i;
    }
    return distinct;
}

static void fail_part(fanout_t *f, size_t index, const char *error)
{
    resp_add_error(&f->parts[index].result, error);
    f->parts[index].done = true;
    f->remaining--;
}

/* Splits a multi-key command by target and starts every part; name is
 * the command each part runs. */
static void start_split(router_t *r, fanout_t *f, const view_t *view,
                        const key_layout_t *layout, const cmd_arg_t *name,
                        const cmd_arg_t *argv, const uint32_t *targets)
{
    f->remaining = f->nparts;
    uint32_t *part_member = malloc(f->nparts * sizeof *part_member);
    if (part_member == NULL || group_keys(f, targets, part_member) != 0) {
        free(part_member);
        for (size_t p = 0; p < f->nparts; p++)
            fail_part(f, p, "ERR out of memory");
        return;
    }

    for (size_t p = 0; p < f->nparts; p++) {
        int argc = 0;
        cmd_arg_t *sub = part_argv(layout, name, argv, &f->parts[p], &argc);
        if (sub == NULL) {
            fail_part(f, p, "ERR out of memory");
            continue;
        }
        start_part(r, f, p, view, part_member[p], NULL, argc, sub);
        free(sub);
    }
    free(part_member);
}

/* ---- merging ---- */

static bool is_error(const pc_buf_t *result)
{
    return result->len == 0 || result->data[0] == '-';
}

static const pc_buf_t *first_error(const fanout_t *f)
{
    for (size_t i = 0; i < f->nparts; i++) {
        if (is_error(&f->parts[i].result))
            return &f->parts[i].result;
    }
    return NULL;
}

static void append_result(pc_buf_t *out, const pc_buf_t *result)
{
    if (result->len == 0)
        resp_add_error(out, "ERR empty reply from a peer");
    else
        buf_append(out, result->data, result->len);
}

static void merge_sum(fanout_t *f, pc_buf_t *out)
{
    long long sum = 0;
    for (size_t i = 0; i < f->nparts; i++) {
        resp_value_t value;
        size_t used;
        const pc_buf_t *res = &f->parts[i].result;
        if (resp_read_value(res->data, res->len, &value, &used) != PC_OK ||
            value.type != RESP_INT) {
            append_result(out, res);
            return;
        }
        sum += value.integer;
    }
    resp_add_int(out, sum);
}

static bool is_ok(const pc_buf_t *result)
{
    return result->len == 5 && memcmp(result->data, "+OK\r\n", 5) == 0;
}

/* Returns whether a part failed only because its peer could not be
 * reached or did not reply in time, as opposed to rejecting the command. */
static bool is_unreachable(const part_t *part)
{
    const pc_buf_t *res = &part->result;
    static const char tryagain[] = "-TRYAGAIN peer ";
    static const char timeout[] = "-ERR timed out after ";
    return part->remote &&
           ((res->len >= sizeof tryagain - 1 &&
             memcmp(res->data, tryagain, sizeof tryagain - 1) == 0) ||
            (res->len >= sizeof timeout - 1 &&
             memcmp(res->data, timeout, sizeof timeout - 1) == 0));
}

static void merge_ok(fanout_t *f, pc_buf_t *out)
{
    size_t ok = 0;
    const pc_buf_t *failure = NULL;
    for (size_t i = 0; i < f->nparts; i++) {
        if (is_ok(&f->parts[i].result))
            ok++;
        else if (failure == NULL)
            failure = &f->parts[i].result;
    }
    if (failure == NULL) {
        resp_add_simple(out, "OK");
        return;
    }

    /* A command sent to every member (FLUSHALL) may have run on some. The
     * error reports how many, so that it does not read as "nothing ran". */
    if ((f->def->flags & CMD_ALL_NODES) && ok > 0) {
        size_t len = failure->len > 2 ? failure->len - 3 : 0;
        resp_add_errorf(out, "ERR %s ran on %zu of %zu members; the others failed: %.*s",
                        f->def->name, ok, f->nparts, (int)(len > 200 ? 200 : len),
                        failure->len > 1 ? failure->data + 1 : "");
        return;
    }
    append_result(out, failure);
}

/* Puts each part's array elements back at their keys' positions. */
static void merge_array(fanout_t *f, pc_buf_t *out)
{
    const pc_buf_t *error = first_error(f);
    if (error != NULL) {
        append_result(out, error);
        return;
    }

    struct span { const char *ptr; size_t len; } *spans = calloc(f->nkeys, sizeof *spans);
    if (spans == NULL) {
        resp_add_error(out, "ERR out of memory");
        return;
    }
    for (size_t i = 0; i < f->nparts; i++) {
        const part_t *part = &f->parts[i];
        resp_value_t header;
        size_t at = 0;
        size_t used;
        if (resp_read_value(part->result.data, part->result.len, &header, &used) != PC_OK ||
            header.type != RESP_ARRAY || header.integer != (long long)part->npos) {
            free(spans);
            resp_add_errorf(out, "ERR invalid reply from peer %s", part->target);
            return;
        }
        at = used;
        for (size_t j = 0; j < part->npos; j++) {
            if (resp_skip_value(part->result.data + at, part->result.len - at, &used) != PC_OK) {
                free(spans);
                resp_add_errorf(out, "ERR invalid reply from peer %s", part->target);
                return;
            }
            spans[part->positions[j]].ptr = part->result.data + at;
            spans[part->positions[j]].len = used;
            at += used;
        }
    }

    resp_add_array(out, f->nkeys);
    for (size_t k = 0; k < f->nkeys; k++)
        buf_append(out, spans[k].ptr, spans[k].len);
    free(spans);
}

/* Finds the key array of a part: the reply itself for KEYS, its second
 * element for SCAN. Returns the array's element count and sets *at to its
 * first element, or returns -1 for a malformed reply. */
static long long key_array(const fanout_t *f, const pc_buf_t *res, size_t *at)
{
    resp_value_t value;
    size_t used = 0;
    *at = 0;
    if (resp_read_value(res->data, res->len, &value, &used) != PC_OK ||
        value.type != RESP_ARRAY)
        return -1;
    *at = used;
    if (f->merge == CMD_MERGE_SCAN) {
        if (value.integer != 2 ||
            resp_skip_value(res->data + *at, res->len - *at, &used) != PC_OK)
            return -1;
        *at += used;
        if (resp_read_value(res->data + *at, res->len - *at, &value, &used) != PC_OK ||
            value.type != RESP_ARRAY)
            return -1;
        *at += used;
    }
    return value.integer;
}

/* Joins the key arrays of every part; a SCAN reply gets cursor 0 since
 * each part returned all its keys. */
static void merge_concat(fanout_t *f, pc_buf_t *out)
{
    /* Members that cannot be reached are left out, so KEYS and SCAN list
     * what the reachable members own; any other error is the reply. */
    for (size_t i = 0; i < f->nparts; i++) {
        if (is_error(&f->parts[i].result) && !is_unreachable(&f->parts[i])) {
            append_result(out, &f->parts[i].result);
            return;
        }
    }

    size_t *starts = calloc(f->nparts, sizeof *starts);
    long long total = 0;
    for (size_t i = 0; starts != NULL && i < f->nparts; i++) {
        if (is_unreachable(&f->parts[i])) {
            starts[i] = f->parts[i].result.len;
            continue;
        }
        long long count = key_array(f, &f->parts[i].result, &starts[i]);
        if (count < 0) {
            free(starts);
            resp_add_errorf(out, "ERR invalid reply from peer %s", f->parts[i].target);
            return;
        }
        total += count;
    }
    if (starts == NULL) {
        resp_add_error(out, "ERR out of memory");
        return;
    }

    if (f->merge == CMD_MERGE_SCAN) {
        resp_add_array(out, 2);
        resp_add_cstr(out, "0");
    }
    resp_add_array(out, (size_t)total);
    for (size_t i = 0; i < f->nparts; i++) {
        const pc_buf_t *res = &f->parts[i].result;
        buf_append(out, res->data + starts[i], res->len - starts[i]);
    }
    free(starts);
}

static void merge(fanout_t *f, pc_buf_t *out)
{
    switch (f->merge) {
    case CMD_MERGE_SUM:
        merge_sum(f, out);
        break;
    case CMD_MERGE_OK:
        merge_ok(f, out);
        break;
    case CMD_MERGE_ARRAY:
        merge_array(f, out);
        break;
    case CMD_MERGE_CONCAT:
    case CMD_MERGE_SCAN:
        merge_concat(f, out);
        break;
    case CMD_MERGE_NONE:
        append_result(out, &f->parts[0].result);
        break;
    }
}

/* ---- MSETNX across owners ---- */

static void restart_parts(fanout_t *f, size_t nparts)
{
    for (size_t i = 0; i < f->nparts; i++) {
        buf_reset(&f->parts[i].result);
        free(f->parts[i].positions);
        f->parts[i] = (part_t){.result = f->parts[i].result};
    }
    f->nparts = nparts;
    f->deadline_ms = (int64_t)pc_time_ms() + ROUTER_TIMEOUT_MS;
}

/* Runs after the EXISTS phase: replies 0 when a key exists, otherwise
 * starts the MSET phase. Returns whether the fan-out goes on. */
static bool msetnx_next(router_t *r, fanout_t *f)
{
    pc_buf_t probe;
    buf_init(&probe, 64);
    f->merge = CMD_MERGE_SUM;
    merge_sum(f, &probe);
    bool zero = probe.len == 4 && memcmp(probe.data, ":0\r\n", 4) == 0;
    if (!zero) {
        pc_buf_t *out = &f->slot->data;
        if (probe.data[0] == ':')
            resp_add_int(out, 0);
        else
            buf_append(out, probe.data, probe.len);
        buf_fini(&probe);
        return false;
    }
    buf_fini(&probe);

    store_read_lock();
    const view_t *view = rcu_dereference(r->io->node->view);
    if (view == NULL) {
        store_read_unlock();
        resp_add_error(&f->slot->data, "TRYAGAIN the member list changed; retry");
        return false;
    }
    /* NOTE: MSETNX across several primaries checks, then sets: a write
     * to one of its keys between the two phases is not seen. */
    restart_parts(f, f->nparts);
    f->msetnx_phase = 2;
    f->merge = CMD_MERGE_OK;
    cmd_arg_t name = {"MSET", 4};
    key_layout_t pairs = {.first = 1, .step = 2, .values = true};
    start_split(r, f, view, &pairs, &name, f->saved_argv, f->saved_targets);
    store_read_unlock();
    return true;
}

static void finish(router_t *r, fanout_t *f)
{
    conn_t *conn = f->conn;

    if (f->msetnx_phase == 1) {
        if (msetnx_next(r, f)) {
            if (f->remaining == 0)
                finish(r, f);
            return;
        }
    } else if (f->msetnx_phase == 2) {
        const pc_buf_t *error = first_error(f);
        if (error != NULL)
            append_result(&f->slot->data, error);
        else
            resp_add_int(&f->slot->data, 1);
    } else {
        merge(f, &f->slot->data);
    }

    slot_t *slot = f->slot;
    fanout_free(r, f);
    conn_complete(conn, slot);
    conn_release(conn);
}

static int save_args(fanout_t *f, int argc, const cmd_arg_t *argv, const uint32_t *targets,
                     size_t nkeys)
{
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += argv[i].len;
    char *blob = malloc(argc * sizeof(cmd_arg_t) + bytes + 1);
    f->saved_targets = malloc(nkeys * sizeof *f->saved_targets);
    if (blob == NULL || f->saved_targets == NULL) {
        free(blob);
        return -1;
    }
    /* One allocation: the argument array, then the argument bytes. */
    f->saved_argv = (cmd_arg_t *)blob;
    char *at = blob + argc * sizeof(cmd_arg_t);
    for (int i = 0; i < argc; i++) {
        memcpy(at, argv[i].ptr, argv[i].len);
        f->saved_argv[i] = (cmd_arg_t){at, argv[i].len};
        at += argv[i].len;
    }
    f->saved_argc = argc;
    memcpy(f->saved_targets, targets, nkeys * sizeof *targets);
    return 0;
}

/* ---- dispatch ---- */

static void reply_tryagain(conn_t *conn)
{
    resp_add_error(conn_reply_buf(conn), "TRYAGAIN this node has not joined a "
                                         "cluster yet; retry shortly");
}

/* Finds the node each key goes to. Returns -1 when a key has no owner. */
static int find_targets(const view_t *view, const cmd_def_t *def, int argc,
                        const cmd_arg_t *argv, uint32_t *targets, size_t nkeys)
{
    bool write = (def->flags & CMD_WRITE) != 0;
    key_layout_t layout = {.first = def->first_key, .step = def->key_step};
    for (size_t i = 0; i < nkeys; i++) {
        const cmd_arg_t *key = &argv[key_index(&layout, i)];
        uint32_t owners[VIEW_MAX_REPLICAS];
        size_t n = view_owners(view, hash_bytes(key->ptr, key->len), owners);
        if (n == 0)
            return -1;
        targets[i] = owners[0];
        for (size_t j = 0; !write && j < n; j++) {
            if ((int)owners[j] == view->self)
                targets[i] = owners[j];
        }
    }
    return 0;
}

static size_t count_keys(const cmd_def_t *def, int argc)
{
    int last = def->last_key < 0 ? argc + def->last_key : def->last_key;
    if (last < def->first_key)
        return 0;
    return (size_t)((last - def->first_key) / def->key_step + 1);
}

static void dispatch_split(router_t *r, conn_t *conn, const view_t *view,
                           const cmd_def_t *def, int argc, const cmd_arg_t *argv,
                           const uint32_t *targets, size_t nkeys)
{
    bool msetnx = strcmp(def->name, "msetnx") == 0;
    fanout_t *f = fanout_new(r, conn, def, msetnx ? CMD_MERGE_SUM : def->merge,
                             count_distinct(targets, nkeys), nkeys);
    if (f == NULL) {
        resp_add_error(conn_reply_buf(conn), "ERR out of memory");
        return;
    }

    key_layout_t layout = {.first = def->first_key, .step = def->key_step,
                           .values = def->key_step > 1};
    cmd_arg_t name = argv[0];
    if (msetnx) {
        /* First phase: EXISTS of every key on its primary. */
        if (save_args(f, argc, argv, targets, nkeys) != 0) {
            f->remaining = 1;
            fail_part(f, 0, "ERR out of memory");
            finish(r, f);
            return;
        }
        f->msetnx_phase = 1;
        name = (cmd_arg_t){"EXISTS", 6};
        layout.values = false;
    }

    start_split(r, f, view, &layout, &name, argv, targets);
    if (f->remaining == 0)
        finish(r, f);
}

/* Forwards or runs a whole command on one node. */
static void dispatch_single(router_t *r, conn_t *conn, const view_t *view,
                            const cmd_def_t *def, int argc, const cmd_arg_t *argv,
                            uint32_t target)
{
    if ((int)target == view->self) {
        run_local(r, conn, def, argc, argv, conn_reply_buf(conn));
        return;
    }
    fanout_t *f = fanout_new(r, conn, def, CMD_MERGE_NONE, 1, 0);
    if (f == NULL) {
        resp_add_error(conn_reply_buf(conn), "ERR out of memory");
        return;
    }
    /* A single-key read may fall back to the key's other owners. */
    alternates_t alternates = {0};
    if ((def->flags & CMD_READ) && count_keys(def, argc) == 1) {
        uint32_t owners[VIEW_MAX_REPLICAS];
        const cmd_arg_t *key = &argv[def->first_key];
        size_t n = view_owners(view, hash_bytes(key->ptr, key->len), owners);
        for (size_t i = 0; i < n && alternates.count < PIPE_MAX_ALTERNATES; i++) {
            if (owners[i] != target)
                alternates.members[alternates.count++] = owners[i];
        }
    }

    f->remaining = 1;
    start_part(r, f, 0, view, target, &alternates, argc, argv);
    if (f->remaining == 0)
        finish(r, f);
}

static bool all_same(const uint32_t *targets, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (targets[i] != targets[0])
            return false;
    }
    return true;
}

static void dispatch_keys(router_t *r, conn_t *conn, const view_t *view,
                          const cmd_def_t *def, int argc, const cmd_arg_t *argv)
{
    size_t nkeys = count_keys(def, argc);
    uint32_t local_targets[16];
    uint32_t *targets = nkeys <= 16 ? local_targets : malloc(nkeys * sizeof *targets);
    if (targets == NULL) {
        resp_add_error(conn_reply_buf(conn), "ERR out of memory");
        return;
    }

    if (view == NULL || nkeys == 0 ||
        find_targets(view, def, argc, argv, targets, nkeys) != 0) {
        reply_tryagain(conn);
    } else if (all_same(targets, nkeys)) {
        dispatch_single(r, conn, view, def, argc, argv, targets[0]);
    } else {
        dispatch_split(r, conn, view, def, argc, argv, targets, nkeys);
    }

    if (targets != local_targets)
        free(targets);
}

/* Runs the command on every member and merges the replies (FLUSHALL). */
static void dispatch_all(router_t *r, conn_t *conn, const view_t *view,
                         const cmd_def_t *def, int argc, const cmd_arg_t *argv)
{
    if (view == NULL) {
        run_local(r, conn, def, argc, argv, conn_reply_buf(conn));
        return;
    }
    fanout_t *f = fanout_new(r, conn, def, def->merge, view->count, 0);
    if (f == NULL) {
        resp_add_error(conn_reply_buf(conn), "ERR out of memory");
        return;
    }
    f->remaining = view->count;
    for (size_t i = 0; i < view->count; i++)
        start_part(r, f, i, view, (uint32_t)i, NULL, argc, argv);
    if (f->remaining == 0)
        finish(r, f);
}

void router_dispatch(router_t *r, conn_t *conn, int argc, const cmd_arg_t *argv)
{
    const cmd_def_t *def = cmd_lookup(argv[0].ptr, argv[0].len);
    if (def == NULL) {
        cmd_reply_unknown(conn_reply_buf(conn), argc, argv);
        return;
    }
    /* Commands with key-value pairs need whole pairs before splitting. */
    if (!cmd_arity_ok(def, argc) ||
        (def->key_step > 1 && def->last_key < 0 &&
         (argc - def->first_key) % def->key_step != 0)) {
        cmd_reply_arity_error(conn_reply_buf(conn), def->name);
        return;
    }
    if (def->flags & (CMD_NOKEY | CMD_CLIENT)) {
        run_local(r, conn, def, argc, argv, conn_reply_buf(conn));
        return;
    }

    store_read_lock();
    const view_t *view = rcu_dereference(r->io->node->view);
    if (def->flags & CMD_ALL_NODES)
        dispatch_all(r, conn, view, def, argc, argv);
    else
        dispatch_keys(r, conn, view, def, argc, argv);
    store_read_unlock();
}

/* ---- replies and timeouts ---- */

void router_on_reply(router_t *r, uint64_t req_id, const char *resp, size_t len)
{
    fanout_t *f;
    size_t index;
    if (!pending_take(r, req_id, &f, &index))
        return; /* timed out already */

    part_t *part = &f->parts[index];
    size_t used = 0;
    if (resp_skip_value(resp, len, &used) != PC_OK || used != len) {
        LOG_WARNING("router", "invalid RESP reply from peer=%s", part->target);
        resp_add_errorf(&part->result, "ERR invalid reply from peer %s", part->target);
    } else {
        buf_append(&part->result, resp, len);
    }
    part->done = true;
    if (--f->remaining == 0)
        finish(r, f);
}

void router_expire(router_t *r, int64_t now_ms)
{
    fanout_t *f = r->fanouts;
    while (f != NULL) {
        fanout_t *next = f->next;
        if (now_ms < f->deadline_ms) {
            f = next;
            continue;
        }
        for (size_t i = 0; i < f->nparts; i++) {
            part_t *part = &f->parts[i];
            fanout_t *owner;
            size_t index;
            if (part->done || !pending_take(r, part->req_id, &owner, &index))
                continue;
            stat_add(&r->io->node->stats.forwarded_failures, 1);
            resp_add_errorf(&part->result, "ERR timed out after %d ms waiting for "
                            "peer %s; the command may still have run there",
                            ROUTER_TIMEOUT_MS, part->target);
            part->done = true;
            f->remaining--;
        }
        if (f->remaining == 0)
            finish(r, f);
        /* finish may start a second MSETNX phase; next is unaffected
         * because new fan-outs go to the head of the list. */
        f = next;
    }
}

router_t *router_new(io_thread_t *io)
{
    router_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->io = io;
    buf_init(&r->scratch, MSG_MAX_FRAME_BYTES);
    return r;
}

void router_destroy(router_t **router)
{
    if (router == NULL || *router == NULL)
        return;
    router_t *r = *router;

    while (r->fanouts != NULL) {
        fanout_t *f = r->fanouts;
        conn_t *conn = f->conn;
        fanout_free(r, f);
        conn_release(conn);
    }
    for (size_t b = 0; b < ROUTER_BUCKETS; b++) {
        while (r->buckets[b] != NULL) {
            pending_t *p = r->buckets[b];
            r->buckets[b] = p->next;
            free(p);
        }
    }
    buf_fini(&r->scratch);
    free(r->margs);
    free(r);
    *router = NULL;
}
