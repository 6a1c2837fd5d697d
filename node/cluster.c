/* cluster: the actor's loop, its sockets, forwarded requests and the
 * replication stream. Membership, joining and handoff are in membership.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "cluster_int.h"
#include "cmd.h"
#include "hash.h"
#include "log.h"
#include "resp.h"

#define CONTROL_ENDPOINT "inproc://peercache-control"
#define MALFORMED_LOG_INTERVAL_MS 1000
#define GAP_LOG_INTERVAL_MS 1000
#define MAX_FRAMES 6
#define DISPATCH_BATCH 256

int64_t cluster_now_ms(void)
{
    return (int64_t)pc_time_ms();
}

void cluster_io_endpoint(unsigned index, char *out, size_t out_len)
{
    snprintf(out, out_len, "inproc://peercache-io-%u", index);
}

peer_t *cluster_find_peer(cluster_t *c, const char *id, size_t len)
{
    for (size_t i = 0; i < c->peer_count; i++) {
        if (strlen(c->peers[i].member.id) == len &&
            memcmp(c->peers[i].member.id, id, len) == 0)
            return &c->peers[i];
    }
    return NULL;
}

/* Names our DEALER sockets with this node's id, so that a peer's ROUTER
 * can log who sent a message even when the message itself is garbage. A
 * restarted node reuses its id, and the peers' ROUTER sockets set
 * ZMQ_ROUTER_HANDOVER so that the new connection takes the name over. */
void cluster_set_routing_id(cluster_t *c, void *dealer)
{
    zmq_setsockopt(dealer, ZMQ_ROUTING_ID, c->self.id, strlen(c->self.id));
}

/* Copies a ROUTER routing id into name when it is a valid node id. */
static void routing_id_name(zmq_msg_t *routing_id, char *name, size_t name_len)
{
    size_t len = zmq_msg_size(routing_id);
    const char *data = zmq_msg_data(routing_id);
    if (!config_id_valid(data, len) || len >= name_len) {
        snprintf(name, name_len, "unknown");
        return;
    }
    memcpy(name, data, len);
    name[len] = '\0';
}

/* Counts a malformed peer message and logs it, at most once a second. */
void cluster_note_malformed(cluster_t *c, const char *peer, const char *why)
{
    stat_add(&c->node->stats.peer_messages_malformed, 1);
    int64_t now = cluster_now_ms();
    if (now - c->malformed_logged_ms < MALFORMED_LOG_INTERVAL_MS) {
        c->malformed_suppressed++;
        return;
    }
    LOG_WARNING("cluster", "dropped malformed peer message peer=%s reason=\"%s\" "
                "suppressed=%" PRIu64, peer, why, c->malformed_suppressed);
    c->malformed_logged_ms = now;
    c->malformed_suppressed = 0;
}

/* Receives one multipart message into frames (initialised here). Frames
 * past max are read and discarded so the socket stays in step. Returns
 * the number of frames, or -1 when nothing could be read. */
static int recv_frames(void *socket, zmq_msg_t *frames, int max, bool *too_many)
{
    int count = 0;
    *too_many = false;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return count == 0 ? -1 : count;
        }
        int more = zmq_msg_more(&part);
        if (count < max)
            frames[count++] = part;
        else {
            *too_many = true;
            zmq_msg_close(&part);
        }
        if (!more)
            return count;
    }
}

static void close_frames(zmq_msg_t *frames, int count)
{
    for (int i = 0; i < count; i++)
        zmq_msg_close(&frames[i]);
}

int cluster_send_dealer(cluster_t *c, peer_t *peer, const pc_buf_t *payload)
{
    if (peer->dealer == NULL)
        return -1;
    return zmq_send(peer->dealer, payload->data, payload->len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

void cluster_send_router(cluster_t *c, zmq_msg_t *routing_id, const pc_buf_t *payload)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, routing_id);
    if (zmq_msg_send(&copy, c->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&copy);
        return;
    }
    if (zmq_send(c->router, payload->data, payload->len, ZMQ_DONTWAIT) < 0)
        LOG_WARNING("cluster", "reply to peer failed error=\"%s\"", zmq_strerror(zmq_errno()));
}

static void send_reply_to_pipe(cluster_t *c, uint64_t req_id, const char *resp, size_t len)
{
    unsigned index = (unsigned)(req_id >> REQ_ID_THREAD_SHIFT);
    if (index >= c->pipe_count)
        return;
    pipe_hdr_t hdr = {.kind = PIPE_REPLY, .req_id = req_id};
    zmq_send(c->pipes[index], &hdr, sizeof hdr, ZMQ_SNDMORE);
    zmq_send(c->pipes[index], resp, len, 0);
}

/* ---- replication stream ---- */

void cluster_publish_entry(cluster_t *c, const char *const *targets,
                           size_t target_count, const msg_entry_t *entry)
{
    for (size_t i = 0; i < target_count; i++) {
        peer_t *peer = cluster_find_peer(c, targets[i], strlen(targets[i]));
        if (peer == NULL)
            continue;

        msg_t msg = {.type = MSG_REPL, .epoch = c->node->start_ms,
                     .seq = ++peer->out_seq, .entry_count = 1};
        msg.from.ptr = c->self.id;
        msg.from.len = strlen(c->self.id);
        msg.entries = (msg_entry_t *)entry;

        buf_reset(&c->scratch);
        if (msg_encode(&msg, &c->scratch) != PC_OK) {
            LOG_ERROR("cluster", "encoding a REPL message failed error=%s",
                      pc_err_name(buf_error(&c->scratch)));
            continue;
        }
        /* The topic is the destination id and a NUL byte, so that the
         * subscription of "node1" never matches "node10". */
        zmq_send(c->pub, peer->member.id, strlen(peer->member.id) + 1, ZMQ_SNDMORE);
        zmq_send(c->pub, c->scratch.data, c->scratch.len, 0);
        stat_add(&c->node->stats.repl_sent, 1);
    }
}

void cluster_note_apply_failure(cluster_t *c, msg_bytes_t from, pc_err_t err)
{
    char peer[MSG_MAX_ID_BYTES + 1];
    snprintf(peer, sizeof peer, "%.*s", (int)from.len, from.ptr);
    if (err == PC_ERR_INVALID) {
        cluster_note_malformed(c, peer, "entry version more than an hour ahead of this "
                               "node's clock; check the peer's clock");
        return;
    }
    /* Out of memory: logged each time, since it loses a write. */
    LOG_WARNING("cluster", "applying a replicated entry failed peer=%s error=%s", peer,
                pc_err_name(err));
}

pc_err_t cluster_apply_entry(cluster_t *c, const msg_entry_t *entry)
{
    /* A version far in the future would drag this node's clock along and
     * win every later comparison, so it is rejected: either the peer's
     * clock is badly wrong or the message is forged. */
    uint64_t now = pc_time_ms();
    if (hlc_ms(entry->hlc) > now + CLUSTER_MAX_CLOCK_AHEAD_MS)
        return PC_ERR_INVALID;
    hlc_observe(&c->node->clock, entry->hlc);

    store_entry_t *stored;
    pc_version_t version = {.hlc = entry->hlc, .origin = entry->origin};
    uint64_t hash = hash_bytes(entry->key.ptr, entry->key.len);
    /* A tombstone carries no value, whatever the peer sent. */
    size_t value_len = entry->tombstone ? 0 : entry->value.len;
    pc_err_t err = store_entry_new(hash, entry->key.ptr, entry->key.len,
                                   value_len ? entry->value.ptr : NULL, value_len,
                                   entry->expire_ms, version,
                                   entry->tombstone ? STORE_FLAG_TOMBSTONE : 0,
                                   &stored);
    if (err != PC_OK)
        return err;
    return store_apply(c->node->store, stored);
}

/* Tracks the publisher's sequence numbers and counts gaps. */
static void check_stream(cluster_t *c, const msg_t *msg)
{
    peer_t *peer = cluster_find_peer(c, msg->from.ptr, msg->from.len);
    if (peer == NULL)
        return;

    if (msg->epoch != peer->in_epoch) {
        /* A new epoch is a restarted publisher: its stream starts over. */
        peer->in_epoch = msg->epoch;
        peer->in_seq = msg->seq;
        return;
    }
    if (msg->seq > peer->in_seq + 1) {
        uint64_t missing = msg->seq - peer->in_seq - 1;
        stat_add(&c->node->stats.repl_gaps, missing);
        int64_t now = cluster_now_ms();
        if (now - c->gap_logged_ms >= GAP_LOG_INTERVAL_MS) {
            LOG_WARNING("cluster", "replication stream gap peer=%s missing=%" PRIu64
                        " seq=%" PRIu64 "; requesting a resync", peer->member.id,
                        missing, msg->seq);
            c->gap_logged_ms = now;
        }
        /* The missing writes are unknown, so the publisher resends every
         * key it is the first owner of and this node holds. */
        membership_request_resync(c, peer);
    }
    if (msg->seq > peer->in_seq)
        peer->in_seq = msg->seq;
}

static void on_repl(cluster_t *c, const msg_t *msg)
{
    check_stream(c, msg);
    pc_err_t err = cluster_apply_entry(c, &msg->entries[0]);
    if (err == PC_OK)
        stat_add(&c->node->stats.repl_applied, 1);
    else if (err == PC_ERR_STALE)
        stat_add(&c->node->stats.repl_stale, 1);
    else
        cluster_note_apply_failure(c, msg->from, err);
}

/* Decodes one frame into *msg, which the caller releases with msg_fini
 * either way. A frame that fails validation is counted and logged with
 * the peer's id, and false is returned. */
static bool decode_frame(cluster_t *c, zmq_msg_t *frame, const char *peer, msg_t *msg)
{
    char why[160];
    if (msg_decode(zmq_msg_data(frame), zmq_msg_size(frame), msg, why, sizeof why) == PC_OK)
        return true;
    cluster_note_malformed(c, peer, why);
    return false;
}

static bool on_sub(cluster_t *c)
{
    zmq_msg_t frames[MAX_FRAMES];
    bool too_many;
    int count = recv_frames(c->sub, frames, MAX_FRAMES, &too_many);
    if (count < 0)
        return false;
    if (count != 2 || too_many) {
        cluster_note_malformed(c, "unknown", "PUB/SUB message without two frames");
        close_frames(frames, count);
        return true;
    }

    msg_t msg;
    if (!decode_frame(c, &frames[1], "unknown", &msg)) {
        /* counted and logged */
    } else if (msg.type == MSG_REPL) {
        on_repl(c, &msg);
    } else if (msg.type == MSG_BEAT) {
        membership_on_beat(c, &msg);
    } else {
        char peer[MSG_MAX_ID_BYTES + 1];
        snprintf(peer, sizeof peer, "%.*s", (int)msg.from.len, msg.from.ptr);
        cluster_note_malformed(c, peer, "unexpected message type on PUB/SUB");
    }
    msg_fini(&msg);
    close_frames(frames, count);
    return true;
}

/* ---- forwarded requests ---- */

static void actor_replicate(void *arg, const store_entry_t *entry)
{
    cluster_t *c = arg;
    const view_t *view = c->view;
    if (view == NULL)
        return;

    uint32_t holders[2 * VIEW_MAX_REPLICAS];
    size_t n = view_holders(view, entry->hash, holders);
    const char *targets[2 * VIEW_MAX_REPLICAS];
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if ((int)holders[i] != view->self)
            targets[count++] = view->members[holders[i]].id;
    }

    msg_entry_t out = {
        .key = {entry->key, entry->key_len},
        .value = {entry->value, entry->value_len},
        .hlc = entry->version.hlc,
        .origin = entry->version.origin,
        .expire_ms = entry->expire_ms,
        .tombstone = (entry->flags & STORE_FLAG_TOMBSTONE) != 0,
    };
    cluster_publish_entry(c, targets, count, &out);
}

static void on_request(cluster_t *c, zmq_msg_t *routing_id, const msg_t *msg)
{
    cmd_arg_t *argv = malloc(msg->arg_count * sizeof *argv);
    pc_buf_t reply;
    buf_init(&reply, MSG_MAX_FRAME_BYTES / 2);

    if (argv == NULL) {
        resp_add_error(&reply, "ERR out of memory");
    } else {
        for (size_t i = 0; i < msg->arg_count; i++) {
            argv[i].ptr = msg->args[i].ptr;
            argv[i].len = msg->args[i].len;
        }
        cmd_ctx_t ctx = {
            .store = c->node->store, .clock = &c->node->clock,
            .origin = c->node->origin, .now_ms = cluster_now_ms(),
            .out = &reply, .replicate = actor_replicate, .replicate_arg = c,
            .node = c->node, .client = NULL,
        };
        cmd_execute(&ctx, (int)msg->arg_count, argv);
        stat_add(&c->node->stats.peer_requests_served, 1);
    }
    free(argv);

    if (buf_error(&reply) != PC_OK) {
        buf_fini(&reply);
        resp_add_error(&reply, "ERR reply exceeds the peer message size limit");
    }

    msg_t out = {.type = MSG_REPLY, .id = msg->id};
    out.from.ptr = c->self.id;
    out.from.len = strlen(c->self.id);
    out.resp.ptr = reply.data;
    out.resp.len = reply.len;
    buf_reset(&c->scratch);
    if (msg_encode(&out, &c->scratch) == PC_OK)
        cluster_send_router(c, routing_id, &c->scratch);
    buf_fini(&reply);
}

static bool on_router(cluster_t *c)
{
    zmq_msg_t frames[MAX_FRAMES];
    bool too_many;
    int count = recv_frames(c->router, frames, MAX_FRAMES, &too_many);
    if (count < 0)
        return false;
    char sender[MSG_MAX_ID_BYTES + 1];
    routing_id_name(&frames[0], sender, sizeof sender);
    if (count != 2 || too_many) {
        cluster_note_malformed(c, sender, "ROUTER message without one payload frame");
        close_frames(frames, count);
        return true;
    }

    msg_t msg;
    if (!decode_frame(c, &frames[1], sender, &msg)) {
        msg_fini(&msg);
        close_frames(frames, count);
        return true;
    }

    switch (msg.type) {
    case MSG_JOIN:
        membership_on_join(c, &frames[0], &msg);
        break;
    case MSG_MEMBERS:
        membership_merge(c, msg.members, msg.member_count, "gossip");
        break;
    case MSG_REQUEST:
        on_request(c, &frames[0], &msg);
        break;
    case MSG_SYNC:
        membership_on_sync(c, &msg);
        break;
    case MSG_HANDOFF:
        membership_on_handoff(c, &frames[0], &msg);
        break;
    default:
        cluster_note_malformed(c, sender, "unexpected message type on ROUTER");
        break;
    }
    msg_fini(&msg);
    close_frames(frames, count);
    return true;
}

static bool on_dealer(cluster_t *c, void *socket, peer_t *peer)
{
    zmq_msg_t frames[MAX_FRAMES];
    bool too_many;
    int count = recv_frames(socket, frames, MAX_FRAMES, &too_many);
    if (count < 0)
        return false;

    const char *peer_id = peer ? peer->member.id : "seed";
    msg_t msg;
    if (count != 1 || too_many) {
        cluster_note_malformed(c, peer_id, "DEALER message without one frame");
        close_frames(frames, count);
        return true;
    }
    if (!decode_frame(c, &frames[0], peer_id, &msg)) {
        /* counted and logged */
    } else if (msg.type == MSG_REPLY) {
        send_reply_to_pipe(c, msg.id, msg.resp.ptr, msg.resp.len);
    } else if (msg.type == MSG_WELCOME) {
        membership_on_welcome(c, &msg);
    } else if (msg.type == MSG_ACK && peer != NULL) {
        membership_on_ack(c, peer, &msg);
    } else {
        cluster_note_malformed(c, peer_id, "unexpected message type on DEALER");
    }
    msg_fini(&msg);
    close_frames(frames, count);
    return true;
}

/* ---- I/O thread pipes ---- */

static void fail_forward(cluster_t *c, uint64_t req_id, const char *target)
{
    stat_add(&c->node->stats.forwarded_failures, 1);
    int64_t now = cluster_now_ms();
    if (now - c->forward_failure_logged_ms >= MALFORMED_LOG_INTERVAL_MS) {
        LOG_WARNING("cluster", "cannot forward a request peer=%.64s: not connected "
                    "within %d ms; clients get TRYAGAIN (at most one line a second)",
                    target, CLUSTER_FORWARD_HOLD_MS);
        c->forward_failure_logged_ms = now;
    }
    char resp[160];
    int len = snprintf(resp, sizeof resp,
                       "-TRYAGAIN peer %.64s is unreachable; retry shortly\r\n", target);
    send_reply_to_pipe(c, req_id, resp, (size_t)len);
}

static bool has_held(cluster_t *c, const char *target)
{
    for (held_request_t *h = c->held_head; h != NULL; h = h->next) {
        if (strcmp(h->target, target) == 0)
            return true;
    }
    return false;
}

static void hold_request(cluster_t *c, const pipe_hdr_t *hdr, const void *data, size_t len)
{
    held_request_t *h = malloc(sizeof *h + len);
    if (h == NULL) {
        fail_forward(c, hdr->req_id, hdr->target);
        return;
    }
    h->next = NULL;
    h->req_id = hdr->req_id;
    h->deadline_ms = cluster_now_ms() + CLUSTER_FORWARD_HOLD_MS;
    memcpy(h->target, hdr->target, sizeof h->target);
    h->len = len;
    memcpy(h->data, data, len);
    if (c->held_tail)
        c->held_tail->next = h;
    else
        c->held_head = h;
    c->held_tail = h;
}

/* Sends held requests whose peers are now connected, in arrival order
 * per peer, and fails those past their deadline. */
static void retry_held(cluster_t *c, int64_t now)
{
    held_request_t **at = &c->held_head;
    held_request_t *prev = NULL;
    char blocked[8][PIPE_ID_BYTES];
    size_t blocked_count = 0;

    while (*at != NULL) {
        held_request_t *h = *at;
        bool is_blocked = false;
        for (size_t i = 0; i < blocked_count; i++)
            is_blocked = is_blocked || strcmp(blocked[i], h->target) == 0;

        peer_t *peer = cluster_find_peer(c, h->target, strlen(h->target));
        bool sent = !is_blocked && peer != NULL && peer->dealer != NULL &&
                    zmq_send(peer->dealer, h->data, h->len, ZMQ_DONTWAIT) >= 0;
        if (!sent && now < h->deadline_ms) {
            /* Later requests to this peer wait behind this one. */
            if (!is_blocked && blocked_count < 8)
                memcpy(blocked[blocked_count++], h->target, PIPE_ID_BYTES);
            prev = h;
            at = &h->next;
            continue;
        }
        if (!sent)
            fail_forward(c, h->req_id, h->target);
        *at = h->next;
        if (c->held_tail == h)
            c->held_tail = prev;
        free(h);
    }
}

static void free_held(cluster_t *c)
{
    while (c->held_head != NULL) {
        held_request_t *h = c->held_head;
        c->held_head = h->next;
        free(h);
    }
    c->held_tail = NULL;
}

static bool try_send(cluster_t *c, peer_t *peer, zmq_msg_t *payload)
{
    return peer->dealer != NULL &&
           zmq_send(peer->dealer, zmq_msg_data(payload), zmq_msg_size(payload),
                    ZMQ_DONTWAIT) >= 0;
}

static void pipe_forward(cluster_t *c, unsigned index, const pipe_hdr_t *hdr,
                         zmq_msg_t *payload)
{
    stat_add(&c->node->stats.forwarded_requests, 1);
    peer_t *peer = cluster_find_peer(c, hdr->target, strnlen(hdr->target, PIPE_ID_BYTES));
    if (peer == NULL) {
        fail_forward(c, hdr->req_id, hdr->target);
        return;
    }

    /* Requests to one peer leave in the order they came, so a request
     * may not overtake one that is held. */
    if (!has_held(c, hdr->target) && try_send(c, peer, payload))
        return;

    /* A read may go to another owner that is connected. */
    for (uint32_t i = 0; i < hdr->alternate_count && i < PIPE_MAX_ALTERNATES; i++) {
        const char *id = hdr->alternates[i];
        peer_t *other = cluster_find_peer(c, id, strnlen(id, PIPE_ID_BYTES));
        if (other != NULL && !has_held(c, other->member.id) && try_send(c, other, payload))
            return;
    }
    hold_request(c, hdr, zmq_msg_data(payload), zmq_msg_size(payload));
}

static void pipe_repl(cluster_t *c, const pipe_hdr_t *hdr, zmq_msg_t *frames, int count)
{
    if (count != 5 ||
        zmq_msg_size(&frames[1]) != (size_t)hdr->target_count * PIPE_ID_BYTES ||
        zmq_msg_size(&frames[4]) != sizeof(pipe_repl_meta_t) ||
        hdr->target_count > 2 * VIEW_MAX_REPLICAS) {
        LOG_ERROR("cluster", "dropped a malformed pipe message from an I/O thread");
        return;
    }

    pipe_repl_meta_t meta;
    memcpy(&meta, zmq_msg_data(&frames[4]), sizeof meta);
    const char *targets[2 * VIEW_MAX_REPLICAS];
    const char *ids = zmq_msg_data(&frames[1]);
    for (uint32_t i = 0; i < hdr->target_count; i++)
        targets[i] = ids + (size_t)i * PIPE_ID_BYTES;

    msg_entry_t entry = {
        .key = {zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2])},
        .value = {zmq_msg_data(&frames[3]), zmq_msg_size(&frames[3])},
        .hlc = meta.hlc,
        .origin = meta.origin,
        .expire_ms = meta.expire_ms,
        .tombstone = (meta.flags & STORE_FLAG_TOMBSTONE) != 0,
    };
    cluster_publish_entry(c, targets, hdr->target_count, &entry);
}

static bool on_pipe(cluster_t *c, unsigned index)
{
    zmq_msg_t frames[MAX_FRAMES];
    bool too_many;
    int count = recv_frames(c->pipes[index], frames, MAX_FRAMES, &too_many);
    if (count < 0)
        return false;

    pipe_hdr_t hdr;
    if (count >= 2 && !too_many && zmq_msg_size(&frames[0]) == sizeof hdr) {
        memcpy(&hdr, zmq_msg_data(&frames[0]), sizeof hdr);
        if (hdr.kind == PIPE_FORWARD && count == 2)
            pipe_forward(c, index, &hdr, &frames[1]);
        else if (hdr.kind == PIPE_REPL)
            pipe_repl(c, &hdr, frames, count);
    }
    close_frames(frames, count);
    return true;
}

/* ---- timers ---- */

static void publish_beat(cluster_t *c)
{
    msg_t msg = {.type = MSG_BEAT, .epoch = c->node->start_ms};
    msg.from.ptr = c->self.id;
    msg.from.len = strlen(c->self.id);
    buf_reset(&c->scratch);
    if (msg_encode(&msg, &c->scratch) != PC_OK)
        return;
    zmq_send(c->pub, "*", 2, ZMQ_SNDMORE);
    zmq_send(c->pub, c->scratch.data, c->scratch.len, 0);
}

static void run_sweep(cluster_t *c, int64_t now)
{
    store_stats_t stats;
    store_stats(c->node->store, &stats);
    /* NOTE: a sweep scans the whole table, so it runs only while entries
     * with an expiry or tombstones exist; lazy expiry covers reads. */
    if (stats.expiring == 0 && stats.tombstones == 0)
        return;
    uint64_t removed = store_sweep(c->node->store, now, CLUSTER_TOMBSTONE_GRACE_MS);
    if (removed > 0)
        LOG_DEBUG("store", "sweep removed entries count=%" PRIu64, removed);
}

static void run_timers(cluster_t *c, int64_t now)
{
    if (now >= c->next_beat_ms) {
        publish_beat(c);
        c->next_beat_ms = now + CLUSTER_BEAT_INTERVAL_MS;
    }
    if (now >= c->next_gossip_ms) {
        membership_broadcast(c);
        c->next_gossip_ms = now + CLUSTER_GOSSIP_INTERVAL_MS;
    }
    if (now >= c->next_sweep_ms) {
        run_sweep(c, now);
        c->next_sweep_ms = now + CLUSTER_SWEEP_INTERVAL_MS;
    }
    membership_tick(c, now);
    if (c->held_head != NULL)
        retry_held(c, now);
}

static long next_timeout(cluster_t *c, int64_t now)
{
    int64_t next = c->next_beat_ms;
    if (c->next_gossip_ms < next)
        next = c->next_gossip_ms;
    if (c->next_sweep_ms < next)
        next = c->next_sweep_ms;
    if (c->held_head != NULL && now + CLUSTER_HOLD_RETRY_MS < next)
        next = now + CLUSTER_HOLD_RETRY_MS;
    int64_t member_next = membership_next_deadline(c);
    if (member_next > 0 && member_next < next)
        next = member_next;
    return next <= now ? 0 : (long)(next - now);
}

/* ---- the loop ---- */

typedef struct poll_set {
    zmq_pollitem_t *items;
    size_t count;
    size_t cap;
} poll_set_t;

static int poll_add(poll_set_t *set, void *socket)
{
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 32;
        zmq_pollitem_t *items = realloc(set->items, cap * sizeof *items);
        if (items == NULL)
            return -1;
        set->items = items;
        set->cap = cap;
    }
    set->items[set->count++] = (zmq_pollitem_t){.socket = socket, .events = ZMQ_POLLIN};
    return 0;
}

static void build_poll_set(cluster_t *c, poll_set_t *set)
{
    set->count = 0;
    poll_add(set, c->control);
    poll_add(set, c->router);
    poll_add(set, c->sub);
    for (unsigned i = 0; i < c->pipe_count; i++)
        poll_add(set, c->pipes[i]);
    for (size_t i = 0; i < c->peer_count; i++)
        poll_add(set, c->peers[i].dealer);
    for (size_t i = 0; i < c->seed_dealer_count; i++)
        poll_add(set, c->seed_dealers[i]);
}

/* Returns the peer whose DEALER is socket, or NULL. */
static peer_t *dealer_owner(cluster_t *c, void *socket)
{
    for (size_t p = 0; p < c->peer_count; p++) {
        if (c->peers[p].dealer == socket)
            return &c->peers[p];
    }
    return NULL;
}

static bool is_seed_dealer(cluster_t *c, void *socket)
{
    for (size_t s = 0; s < c->seed_dealer_count; s++) {
        if (c->seed_dealers[s] == socket)
            return true;
    }
    return false;
}

/* Handles what one poll returned, reading up to DISPATCH_BATCH messages
 * per socket, so that a busy socket costs one poll per batch rather than
 * per message. Returns false when the control pipe requests a stop. */
static bool dispatch(cluster_t *c, poll_set_t *set)
{
    zmq_pollitem_t *items = set->items;
    if (items[0].revents & ZMQ_POLLIN)
        return false;
    for (int n = 0; (items[1].revents & ZMQ_POLLIN) && n < DISPATCH_BATCH; n++) {
        if (!on_router(c))
            break;
    }
    for (int n = 0; (items[2].revents & ZMQ_POLLIN) && n < DISPATCH_BATCH; n++) {
        if (!on_sub(c))
            break;
    }

    size_t at = 3;
    for (unsigned i = 0; i < c->pipe_count; i++, at++) {
        for (int n = 0; (items[at].revents & ZMQ_POLLIN) && n < DISPATCH_BATCH; n++) {
            if (!on_pipe(c, i))
                break;
        }
    }

    /* Handlers may add peers (moving the array), replace a peer's socket
     * or close the seed sockets, so each socket's owner is looked up again
     * before every read. */
    for (size_t k = at; k < set->count; k++) {
        zmq_pollitem_t *item = &items[k];
        for (int n = 0; (item->revents & ZMQ_POLLIN) && n < DISPATCH_BATCH; n++) {
            peer_t *owner = dealer_owner(c, item->socket);
            if (owner == NULL && !is_seed_dealer(c, item->socket))
                break;
            if (!on_dealer(c, item->socket, owner))
                break;
        }
    }
    return true;
}

static void *actor_main(void *arg)
{
    cluster_t *c = arg;
    store_thread_register();

    poll_set_t set = {0};
    bool running = true;
    while (running) {
        int64_t now = cluster_now_ms();
        run_timers(c, now);
        build_poll_set(c, &set);

        int rc = zmq_poll(set.items, (int)set.count, next_timeout(c, cluster_now_ms()));
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            LOG_ERROR("cluster", "zmq_poll failed error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        if (rc > 0)
            running = dispatch(c, &set);
    }

    free(set.items);
    store_thread_unregister();
    return NULL;
}

/* ---- start and stop ---- */

static void *new_socket(cluster_t *c, int type)
{
    void *socket = zmq_socket(c->node->zmq_ctx, type);
    if (socket == NULL)
        return NULL;
    int zero = 0;
    zmq_setsockopt(socket, ZMQ_LINGER, &zero, sizeof zero);
    return socket;
}

static pc_err_t bind_socket(void *socket, const char *host, uint16_t port, const char *role)
{
    char endpoint[320];
    snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", host, port);
    if (zmq_bind(socket, endpoint) != 0) {
        LOG_ERROR("cluster", "cannot bind the %s socket endpoint=%s error=\"%s\"; "
                  "check --bind and that the port is free", role, endpoint,
                  zmq_strerror(zmq_errno()));
        return PC_ERR_ZMQ;
    }
    return PC_OK;
}

static pc_err_t open_peer_sockets(cluster_t *c)
{
    const config_t *cfg = &c->node->cfg;
    int hwm = CLUSTER_SOCKET_HWM;
    int one = 1;
    int64_t max_frame = (int64_t)MSG_MAX_FRAME_BYTES;

    c->router = new_socket(c, ZMQ_ROUTER);
    c->pub = new_socket(c, ZMQ_PUB);
    c->sub = new_socket(c, ZMQ_SUB);
    if (c->router == NULL || c->pub == NULL || c->sub == NULL)
        return PC_ERR_ZMQ;

    /* The frame cap makes ZeroMQ drop a larger frame before it is read
     * into memory. */
    zmq_setsockopt(c->router, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    zmq_setsockopt(c->sub, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    zmq_setsockopt(c->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(c->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->sub, ZMQ_RCVHWM, &hwm, sizeof hwm);

    char topic[CONFIG_MAX_ID_BYTES + 2];
    size_t topic_len = strlen(cfg->node_id) + 1;
    memcpy(topic, cfg->node_id, topic_len);
    zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, topic, topic_len);
    zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, "*", 2);

    pc_err_t err = bind_socket(c->router, cfg->bind, cfg->peer_port, "peer (ROUTER)");
    if (err == PC_OK)
        err = bind_socket(c->pub, cfg->bind, cfg->pub_port, "replication (PUB)");
    return err;
}

static pc_err_t open_pipes(cluster_t *c)
{
    int unlimited = 0;
    c->pipe_count = c->node->cfg.threads;
    c->pipes = calloc(c->pipe_count, sizeof *c->pipes);
    if (c->pipes == NULL)
        return PC_ERR_NOMEM;

    for (unsigned i = 0; i < c->pipe_count; i++) {
        char endpoint[64];
        cluster_io_endpoint(i, endpoint, sizeof endpoint);
        c->pipes[i] = new_socket(c, ZMQ_PAIR);
        if (c->pipes[i] == NULL)
            return PC_ERR_ZMQ;
        /* Replies and replicated writes must not be dropped between
         * threads of one process. */
        zmq_setsockopt(c->pipes[i], ZMQ_SNDHWM, &unlimited, sizeof unlimited);
        zmq_setsockopt(c->pipes[i], ZMQ_RCVHWM, &unlimited, sizeof unlimited);
        if (zmq_bind(c->pipes[i], endpoint) != 0)
            return PC_ERR_ZMQ;
    }

    c->control = new_socket(c, ZMQ_PAIR);
    c->control_main = new_socket(c, ZMQ_PAIR);
    if (c->control == NULL || c->control_main == NULL ||
        zmq_bind(c->control, CONTROL_ENDPOINT) != 0 ||
        zmq_connect(c->control_main, CONTROL_ENDPOINT) != 0)
        return PC_ERR_ZMQ;
    return PC_OK;
}

static void close_socket(void **socket)
{
    if (*socket != NULL)
        zmq_close(*socket);
    *socket = NULL;
}

static void free_cluster(cluster_t *c)
{
    free_held(c);
    membership_stop(c);
    close_socket(&c->router);
    close_socket(&c->pub);
    close_socket(&c->sub);
    for (unsigned i = 0; c->pipes != NULL && i < c->pipe_count; i++)
        close_socket(&c->pipes[i]);
    free(c->pipes);
    close_socket(&c->control);
    close_socket(&c->control_main);
    buf_fini(&c->scratch);
    free(c);
}

pc_err_t cluster_start(node_t *node, cluster_t **out)
{
    cluster_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return PC_ERR_NOMEM;
    c->node = node;
    buf_init(&c->scratch, CLUSTER_SCRATCH_MAX_BYTES);

    pc_err_t err = open_peer_sockets(c);
    if (err == PC_OK)
        err = open_pipes(c);
    if (err == PC_OK)
        err = membership_start(c);
    if (err != PC_OK) {
        free_cluster(c);
        return err;
    }

    LOG_NOTICE("cluster", "listening peer=tcp://%s:%u pub=tcp://%s:%u advertise=%s",
               node->cfg.bind, node->cfg.peer_port, node->cfg.bind,
               node->cfg.pub_port, node->cfg.advertise);

    if (pthread_create(&c->thread, NULL, actor_main, c) != 0) {
        free_cluster(c);
        return PC_ERR_IO;
    }
    *out = c;
    return PC_OK;
}

bool cluster_ready(node_t *node)
{
    store_read_lock();
    const view_t *view = rcu_dereference(node->view);
    bool ready = view != NULL && view->read_ring != NULL;
    store_read_unlock();
    return ready;
}

void cluster_stop(cluster_t **cluster)
{
    if (cluster == NULL || *cluster == NULL)
        return;
    cluster_t *c = *cluster;

    /* The actor leaves its loop on any message on the control pipe. */
    zmq_send(c->control_main, "STOP", 4, 0);
    pthread_join(c->thread, NULL);

    free_cluster(c);
    *cluster = NULL;
}
