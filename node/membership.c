/* membership: the member list, joining through seeds, and the handoff of
 * keys to joining nodes. Runs on the cluster actor thread only.
 *
 * Members merge by incarnation (a restart starts a larger one) and then by
 * state (up beats joining), so every node converges on the same list
 * whatever order the JOIN, WELCOME and MEMBERS messages arrive in. A
 * joining node waits for a heartbeat from every member, which shows that
 * its subscriptions work. It then sends SYNC to each member that is up and
 * turns up when every handoff has ended. Until then other nodes route its
 * keys' reads to the owners that already store them.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "cluster_int.h"
#include "config.h"
#include "hash.h"
#include "log.h"

#define MEMBERSHIP_TICK_MS 100

/* ---- member records ---- */

void membership_fill_self(cluster_t *c, msg_member_t *out)
{
    out->id.ptr = c->self.id;
    out->id.len = strlen(c->self.id);
    out->host.ptr = c->self.host;
    out->host.len = strlen(c->self.host);
    out->port = c->self.port;
    out->peer_port = c->self.peer_port;
    out->pub_port = c->self.pub_port;
    out->state = c->self.state;
    out->incarnation = c->self.incarnation;
}

static void fill_record(const member_t *m, msg_member_t *out)
{
    out->id.ptr = m->id;
    out->id.len = strlen(m->id);
    out->host.ptr = m->host;
    out->host.len = strlen(m->host);
    out->port = m->port;
    out->peer_port = m->peer_port;
    out->pub_port = m->pub_port;
    out->state = m->state;
    out->incarnation = m->incarnation;
}

pc_err_t membership_encode(cluster_t *c, msg_type_t type, pc_buf_t *out)
{
    size_t count = type == MSG_JOIN ? 1 : c->peer_count + 1;
    msg_member_t *records = calloc(count, sizeof *records);
    if (records == NULL)
        return PC_ERR_NOMEM;

    membership_fill_self(c, &records[0]);
    for (size_t i = 1; i < count; i++)
        fill_record(&c->peers[i - 1].member, &records[i]);

    msg_t msg = {.type = type, .members = records, .member_count = count};
    msg.from.ptr = c->self.id;
    msg.from.len = strlen(c->self.id);
    buf_reset(out);
    pc_err_t err = msg_encode(&msg, out);
    free(records);
    return err;
}

/* ---- peers and their sockets ---- */

static void connect_peer(cluster_t *c, peer_t *peer)
{
    char endpoint[300];
    int one = 1;
    int zero = 0;
    int hwm = CLUSTER_SOCKET_HWM;

    peer->dealer = zmq_socket(c->node->zmq_ctx, ZMQ_DEALER);
    if (peer->dealer != NULL) {
        zmq_setsockopt(peer->dealer, ZMQ_LINGER, &zero, sizeof zero);
        /* Sends to a peer that is not connected fail at once, so a client
         * gets an error instead of waiting on a queue. */
        zmq_setsockopt(peer->dealer, ZMQ_IMMEDIATE, &one, sizeof one);
        zmq_setsockopt(peer->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
        int64_t max_frame = (int64_t)MSG_MAX_FRAME_BYTES;
        zmq_setsockopt(peer->dealer, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
        cluster_set_routing_id(c, peer->dealer);
        snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", peer->member.host,
                 peer->member.peer_port);
        if (zmq_connect(peer->dealer, endpoint) != 0)
            LOG_WARNING("cluster", "cannot connect to peer peer=%s endpoint=%s error=\"%s\"",
                        peer->member.id, endpoint, zmq_strerror(zmq_errno()));
    }

    snprintf(peer->sub_endpoint, sizeof peer->sub_endpoint, "tcp://%s:%u",
             peer->member.host, peer->member.pub_port);
    if (zmq_connect(c->sub, peer->sub_endpoint) != 0) {
        LOG_WARNING("cluster", "cannot subscribe to peer peer=%s endpoint=%s error=\"%s\"",
                    peer->member.id, peer->sub_endpoint, zmq_strerror(zmq_errno()));
        peer->sub_endpoint[0] = '\0';
    }
}

static void free_handoff(handoff_t **handoff)
{
    if (*handoff == NULL)
        return;
    for (size_t i = 0; i < (*handoff)->count; i++)
        buf_fini(&(*handoff)->batches[i]);
    free((*handoff)->batches);
    free(*handoff);
    *handoff = NULL;
}

void membership_remove_peer_sockets(cluster_t *c, peer_t *peer)
{
    if (peer->dealer != NULL)
        zmq_close(peer->dealer);
    peer->dealer = NULL;
    if (peer->sub_endpoint[0] != '\0')
        zmq_disconnect(c->sub, peer->sub_endpoint);
    peer->sub_endpoint[0] = '\0';
}

static int copy_record(const msg_member_t *rec, member_t *out)
{
    if (!config_id_valid(rec->id.ptr, rec->id.len) || rec->host.len == 0 ||
        rec->host.len > CONFIG_MAX_HOST_BYTES)
        return -1;
    memset(out, 0, sizeof *out);
    memcpy(out->id, rec->id.ptr, rec->id.len);
    memcpy(out->host, rec->host.ptr, rec->host.len);
    out->port = rec->port;
    out->peer_port = rec->peer_port;
    out->pub_port = rec->pub_port;
    out->state = rec->state;
    out->incarnation = rec->incarnation;
    return 0;
}

static peer_t *add_peer(cluster_t *c, const member_t *member)
{
    if (c->peer_count + 1 >= VIEW_MAX_MEMBERS)
        return NULL;
    if (c->peer_count == c->peer_cap) {
        size_t cap = c->peer_cap ? c->peer_cap * 2 : 8;
        peer_t *peers = realloc(c->peers, cap * sizeof *peers);
        if (peers == NULL)
            return NULL;
        c->peers = peers;
        c->peer_cap = cap;
    }
    peer_t *peer = &c->peers[c->peer_count++];
    memset(peer, 0, sizeof *peer);
    peer->member = *member;
    connect_peer(c, peer);
    return peer;
}

static bool same_address(const member_t *a, const member_t *b)
{
    return strcmp(a->host, b->host) == 0 && a->peer_port == b->peer_port &&
           a->pub_port == b->pub_port;
}

/* Merges one record. Returns whether the member list changed. */
static bool merge_one(cluster_t *c, const msg_member_t *rec, const char *source)
{
    member_t incoming;
    if (copy_record(rec, &incoming) != 0) {
        cluster_note_malformed(c, "unknown", "member record with an invalid id or host");
        return false;
    }

    if (strcmp(incoming.id, c->self.id) == 0) {
        if (incoming.incarnation > c->self.incarnation)
            LOG_ERROR("cluster", "another node uses this node id with a newer "
                      "incarnation host=%s; give every node a distinct --node-id",
                      incoming.host);
        return false;
    }

    peer_t *peer = cluster_find_peer(c, incoming.id, strlen(incoming.id));
    if (peer == NULL) {
        if (add_peer(c, &incoming) == NULL) {
            LOG_ERROR("cluster", "cannot add member id=%s: member limit or out of memory",
                      incoming.id);
            return false;
        }
        LOG_NOTICE("cluster", "member added id=%s addr=%s:%u state=%s source=%s",
                   incoming.id, incoming.host, incoming.peer_port,
                   member_state_name(incoming.state), source);
        return true;
    }

    if (incoming.incarnation > peer->member.incarnation) {
        bool moved = !same_address(&peer->member, &incoming);
        if (moved)
            membership_remove_peer_sockets(c, peer);
        peer->member = incoming;
        peer->sync_sent = false;
        peer->sync_done = false;
        peer->last_beat_ms = 0;
        free_handoff(&peer->handoff);
        if (moved)
            connect_peer(c, peer);
        LOG_NOTICE("cluster", "member restarted id=%s addr=%s:%u state=%s "
                   "incarnation=%" PRIu64 " source=%s", incoming.id, incoming.host,
                   incoming.peer_port, member_state_name(incoming.state),
                   incoming.incarnation, source);
        return true;
    }

    if (incoming.incarnation == peer->member.incarnation &&
        incoming.state > peer->member.state) {
        peer->member.state = incoming.state;
        LOG_NOTICE("cluster", "member state changed id=%s state=%s source=%s",
                   incoming.id, member_state_name(incoming.state), source);
        return true;
    }
    return false;
}

bool membership_merge(cluster_t *c, const msg_member_t *members, size_t count,
                      const char *source)
{
    bool changed = false;
    for (size_t i = 0; i < count; i++)
        changed = merge_one(c, &members[i], source) || changed;
    if (changed)
        membership_publish_view(c);
    return changed;
}

/* ---- views ---- */

static void view_free_rcu(struct rcu_head *head)
{
    view_t *view = caa_container_of(head, view_t, rcu);
    view_destroy(&view);
}

void membership_publish_view(cluster_t *c)
{
    size_t count = c->peer_count + 1;
    member_t *members = malloc(count * sizeof *members);
    if (members == NULL) {
        LOG_ERROR("cluster", "cannot build a view: out of memory");
        return;
    }
    members[0] = c->self;
    for (size_t i = 0; i < c->peer_count; i++)
        members[i + 1] = c->peers[i].member;

    view_t *view = NULL;
    pc_err_t err = view_new(members, count, c->self.id, c->node->cfg.vnodes,
                            c->node->cfg.replicas, ++c->generation, &view);
    free(members);
    if (err != PC_OK) {
        LOG_ERROR("cluster", "cannot build a view error=%s", pc_err_name(err));
        return;
    }

    view_t *old = rcu_xchg_pointer(&c->node->view, view);
    c->view = view;
    if (old != NULL)
        urcu_memb_call_rcu(&old->rcu, view_free_rcu);

    /* Keys that moved away stay for a grace period, for peers that still
     * route by the previous view. */
    c->drop_at_ms = cluster_now_ms() + CLUSTER_DROP_GRACE_MS;
    LOG_INFO("cluster", "view published generation=%" PRIu64 " members=%zu",
             view->generation, count);
}

/* ---- gossip ---- */

void membership_broadcast(cluster_t *c)
{
    if (c->peer_count == 0 || c->join_state == JOIN_SEEDING)
        return;
    if (membership_encode(c, MSG_MEMBERS, &c->scratch) != PC_OK)
        return;
    for (size_t i = 0; i < c->peer_count; i++)
        cluster_send_dealer(c, &c->peers[i], &c->scratch);
}

void membership_on_beat(cluster_t *c, const msg_t *msg)
{
    peer_t *peer = cluster_find_peer(c, msg->from.ptr, msg->from.len);
    if (peer != NULL)
        peer->last_beat_ms = cluster_now_ms();
}

/* ---- joining ---- */

static bool seed_is_self(cluster_t *c, const config_seed_t *seed)
{
    return seed->port == c->self.peer_port && strcmp(seed->host, c->self.host) == 0;
}

static void close_seed_dealers(cluster_t *c)
{
    for (size_t i = 0; i < c->seed_dealer_count; i++)
        zmq_close(c->seed_dealers[i]);
    c->seed_dealer_count = 0;
}

static void become_up(cluster_t *c, const char *reason)
{
    c->self.state = MEMBER_UP;
    c->join_state = JOIN_DONE;
    membership_publish_view(c);
    membership_broadcast(c);

    store_stats_t stats;
    store_stats(c->node->store, &stats);
    LOG_NOTICE("cluster", "serving as a member state=up members=%zu keys=%" PRIu64
               " reason=\"%s\"", c->peer_count + 1, stats.keys, reason);
}

/* Sends JOIN to every seed through fresh sockets, so that a seed given
 * as a DNS name is resolved again at each attempt. */
static void send_joins(cluster_t *c, int64_t now)
{
    const config_t *cfg = &c->node->cfg;
    close_seed_dealers(c);
    if (membership_encode(c, MSG_JOIN, &c->scratch) != PC_OK)
        return;

    for (size_t i = 0; i < cfg->seed_count; i++) {
        if (seed_is_self(c, &cfg->seeds[i]))
            continue;
        void *dealer = zmq_socket(c->node->zmq_ctx, ZMQ_DEALER);
        if (dealer == NULL)
            continue;
        int zero = 0;
        zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
        cluster_set_routing_id(c, dealer);
        char endpoint[300];
        snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", cfg->seeds[i].host,
                 cfg->seeds[i].port);
        if (zmq_connect(dealer, endpoint) != 0 ||
            zmq_send(dealer, c->scratch.data, c->scratch.len, ZMQ_DONTWAIT) < 0) {
            LOG_INFO("cluster", "seed not reachable yet seed=%s error=\"%s\"",
                     endpoint, zmq_strerror(zmq_errno()));
            zmq_close(dealer);
            continue;
        }
        c->seed_dealers[c->seed_dealer_count++] = dealer;
    }

    c->join_attempts++;
    int64_t backoff = CLUSTER_JOIN_BACKOFF_MIN_MS;
    for (unsigned i = 1; i < c->join_attempts && backoff < CLUSTER_JOIN_BACKOFF_MAX_MS; i++)
        backoff *= 2;
    if (backoff > CLUSTER_JOIN_BACKOFF_MAX_MS)
        backoff = CLUSTER_JOIN_BACKOFF_MAX_MS;
    c->next_join_ms = now + backoff;

    /* Warn at attempts 4, 8, 16, ...: a second or so in, then less and
     * less often as the backoff grows. */
    unsigned n = c->join_attempts;
    if (n >= 4 && (n & (n - 1)) == 0)
        LOG_WARNING("cluster", "no seed has replied yet attempts=%u next_retry_ms=%"
                    PRId64 "; check --seeds and that a seed is running", n, backoff);
    else
        LOG_INFO("cluster", "sent JOIN to the seeds attempt=%u next_retry_ms=%" PRId64,
                 n, backoff);
}

void membership_on_join(cluster_t *c, zmq_msg_t *routing_id, const msg_t *msg)
{
    membership_merge(c, msg->members, msg->member_count, "join");

    if (membership_encode(c, MSG_WELCOME, &c->scratch) != PC_OK)
        return;
    cluster_send_router(c, routing_id, &c->scratch);

    /* Every member learns of the new one now rather than at the next
     * gossip round. */
    membership_broadcast(c);
}

void membership_on_welcome(cluster_t *c, const msg_t *msg)
{
    if (c->join_state != JOIN_SEEDING)
        return;

    close_seed_dealers(c);
    membership_merge(c, msg->members, msg->member_count, "welcome");
    c->join_state = JOIN_SUBSCRIBING;
    c->join_deadline_ms = cluster_now_ms() + CLUSTER_SUBSCRIBE_WAIT_MS;
    membership_broadcast(c);
    LOG_NOTICE("cluster", "joined through seed from=%.*s members=%zu attempts=%u",
               (int)msg->from.len, msg->from.ptr, c->peer_count + 1, c->join_attempts);
}

static bool all_beats_seen(cluster_t *c)
{
    for (size_t i = 0; i < c->peer_count; i++) {
        if (c->peers[i].member.state == MEMBER_UP && c->peers[i].last_beat_ms == 0)
            return false;
    }
    return true;
}

static bool all_syncs_done(cluster_t *c)
{
    for (size_t i = 0; i < c->peer_count; i++) {
        if (c->peers[i].sync_sent && !c->peers[i].sync_done)
            return false;
    }
    return true;
}

/* Asks every member that is up, and was not asked yet, for our keys. */
static void send_syncs(cluster_t *c)
{
    pc_buf_t *payload = &c->scratch;
    if (membership_encode(c, MSG_SYNC, payload) != PC_OK)
        return;
    for (size_t i = 0; i < c->peer_count; i++) {
        peer_t *peer = &c->peers[i];
        if (peer->member.state != MEMBER_UP || peer->sync_sent)
            continue;
        if (cluster_send_dealer(c, peer, payload) == 0) {
            peer->sync_sent = true;
            LOG_NOTICE("cluster", "handoff requested from=%s", peer->member.id);
        }
    }
}

static bool syncs_pending_send(cluster_t *c)
{
    for (size_t i = 0; i < c->peer_count; i++) {
        if (c->peers[i].member.state == MEMBER_UP && !c->peers[i].sync_sent)
            return true;
    }
    return false;
}

static void tick_join(cluster_t *c, int64_t now)
{
    switch (c->join_state) {
    case JOIN_SEEDING:
        if (now >= c->next_join_ms)
            send_joins(c, now);
        break;
    case JOIN_SUBSCRIBING:
        if (all_beats_seen(c) || now >= c->join_deadline_ms) {
            c->join_state = JOIN_SYNCING;
            c->join_deadline_ms = now + CLUSTER_SYNC_TIMEOUT_MS;
            send_syncs(c);
        }
        break;
    case JOIN_SYNCING:
        if (syncs_pending_send(c))
            send_syncs(c);
        if (!syncs_pending_send(c) && all_syncs_done(c))
            become_up(c, "handoff complete");
        else if (now >= c->join_deadline_ms)
            become_up(c, "handoff timed out; keys not received are served by other owners");
        break;
    case JOIN_DONE:
        break;
    }
}

/* ---- resync after a stream gap ---- */

void membership_request_resync(cluster_t *c, peer_t *peer)
{
    if (peer->resync_running) {
        peer->resync_again = true;
        return;
    }
    if (membership_encode(c, MSG_SYNC, &c->scratch) != PC_OK ||
        cluster_send_dealer(c, peer, &c->scratch) != 0) {
        LOG_WARNING("cluster", "cannot request a resync peer=%s; the next gap "
                    "retries", peer->member.id);
        return;
    }
    peer->resync_running = true;
    peer->resync_again = false;
    stat_add(&c->node->stats.resyncs_requested, 1);
}

static void resync_ended(cluster_t *c, peer_t *peer)
{
    peer->resync_running = false;
    if (peer->resync_again)
        membership_request_resync(c, peer);
}

/* ---- handoff: sending ---- */

typedef struct handoff_scan {
    cluster_t *c;
    const view_t *view;
    uint32_t target;        /* member index of the joining node */
    int64_t now;
    handoff_t *handoff;
    msg_entry_t *entries;   /* the batch being filled */
    size_t entry_count;
    size_t bytes;
    pc_err_t err;
} handoff_scan_t;

static void flush_batch(handoff_scan_t *scan, bool last)
{
    handoff_t *h = scan->handoff;
    pc_buf_t *batches = realloc(h->batches, (h->count + 1) * sizeof *batches);
    if (batches == NULL) {
        scan->err = PC_ERR_NOMEM;
        return;
    }
    h->batches = batches;

    pc_buf_t *out = &h->batches[h->count];
    buf_init(out, MSG_MAX_FRAME_BYTES);
    msg_t msg = {.type = MSG_HANDOFF, .id = h->count + 1,
                 .entries = scan->entries, .entry_count = scan->entry_count,
                 .last = last, .total = h->keys};
    msg.from.ptr = scan->c->self.id;
    msg.from.len = strlen(scan->c->self.id);
    scan->err = msg_encode(&msg, out);
    h->count++;
    scan->entry_count = 0;
    scan->bytes = 0;
}

static int scan_entry(const store_entry_t *e, void *arg)
{
    handoff_scan_t *scan = arg;
    if (e->expire_ms != 0 && e->expire_ms <= scan->now)
        return 0;
    if (!view_holds(scan->view, e->hash, scan->target))
        return 0;

    /* One sender per key: its first owner that is up. */
    uint32_t owners[VIEW_MAX_REPLICAS];
    size_t n = view_owners(scan->view, e->hash, owners);
    if (n == 0 || (int)owners[0] != scan->view->self)
        return 0;

    scan->entries[scan->entry_count++] = (msg_entry_t){
        .key = {e->key, e->key_len},
        .value = {e->value, e->value_len},
        .hlc = e->version.hlc,
        .origin = e->version.origin,
        .expire_ms = e->expire_ms,
        .tombstone = (e->flags & STORE_FLAG_TOMBSTONE) != 0,
    };
    scan->handoff->keys++;
    scan->bytes += e->key_len + e->value_len;
    if (scan->entry_count == HANDOFF_BATCH_ENTRIES || scan->bytes >= HANDOFF_BATCH_BYTES)
        flush_batch(scan, false);
    return scan->err == PC_OK ? 0 : 1;
}

/* Encodes every entry the joining node needs from us into batches.
 * NOTE: the batches are built at once, so a large handoff keeps a copy of
 * the keys it moves until the joining node acknowledges them. */
static handoff_t *build_handoff(cluster_t *c, uint32_t target)
{
    handoff_scan_t scan = {.c = c, .view = c->view, .target = target,
                           .now = cluster_now_ms()};
    scan.handoff = calloc(1, sizeof *scan.handoff);
    scan.entries = calloc(HANDOFF_BATCH_ENTRIES, sizeof *scan.entries);
    if (scan.handoff == NULL || scan.entries == NULL) {
        free(scan.handoff);
        free(scan.entries);
        return NULL;
    }
    scan.handoff->started_ms = scan.now;

    store_read_lock();
    store_foreach(c->node->store, scan_entry, &scan);
    if (scan.err == PC_OK)
        flush_batch(&scan, true);
    store_read_unlock();

    free(scan.entries);
    if (scan.err != PC_OK) {
        LOG_ERROR("cluster", "building a handoff failed error=%s", pc_err_name(scan.err));
        free_handoff(&scan.handoff);
    }
    return scan.handoff;
}

static void pump_handoff(cluster_t *c, peer_t *peer)
{
    handoff_t *h = peer->handoff;
    while (h->sent < h->count && h->sent - h->acked < HANDOFF_WINDOW) {
        if (cluster_send_dealer(c, peer, &h->batches[h->sent]) != 0)
            return; /* not connected yet: the next tick retries */
        h->sent++;
    }
}

void membership_on_sync(cluster_t *c, const msg_t *msg)
{
    membership_merge(c, msg->members, msg->member_count, "sync");

    peer_t *peer = cluster_find_peer(c, msg->from.ptr, msg->from.len);
    int target = peer ? view_find(c->view, peer->member.id) : -1;
    if (peer == NULL || target < 0) {
        cluster_note_malformed(c, "unknown", "SYNC from a node that is not a member");
        return;
    }

    free_handoff(&peer->handoff);
    peer->handoff = build_handoff(c, (uint32_t)target);
    if (peer->handoff == NULL)
        return;
    LOG_NOTICE("cluster", "handoff started to=%s keys=%" PRIu64 " batches=%zu",
               peer->member.id, peer->handoff->keys, peer->handoff->count);
    pump_handoff(c, peer);
}

void membership_on_ack(cluster_t *c, peer_t *peer, const msg_t *msg)
{
    handoff_t *h = peer->handoff;
    if (h == NULL || msg->id > h->sent)
        return;
    if (msg->id > h->acked)
        h->acked = msg->id;

    if (h->acked == h->count) {
        stat_add(&c->node->stats.handoff_keys_sent, h->keys);
        LOG_NOTICE("cluster", "handoff ended to=%s keys=%" PRIu64 " duration_ms=%" PRId64,
                   peer->member.id, h->keys, cluster_now_ms() - h->started_ms);
        free_handoff(&peer->handoff);
        return;
    }
    pump_handoff(c, peer);
}

/* ---- handoff: receiving ---- */

void membership_on_handoff(cluster_t *c, zmq_msg_t *routing_id, const msg_t *msg)
{
    peer_t *peer = cluster_find_peer(c, msg->from.ptr, msg->from.len);
    char from[MSG_MAX_ID_BYTES + 1];
    snprintf(from, sizeof from, "%.*s", (int)msg->from.len, msg->from.ptr);

    for (size_t i = 0; i < msg->entry_count; i++) {
        pc_err_t err = cluster_apply_entry(c, &msg->entries[i]);
        if (err != PC_OK && err != PC_ERR_STALE)
            cluster_note_apply_failure(c, msg->from, err);
    }
    stat_add(&c->node->stats.handoff_keys_received, msg->entry_count);
    if (peer != NULL)
        peer->sync_keys += msg->entry_count;

    msg_t ack = {.type = MSG_ACK, .id = msg->id};
    ack.from.ptr = c->self.id;
    ack.from.len = strlen(c->self.id);
    buf_reset(&c->scratch);
    if (msg_encode(&ack, &c->scratch) == PC_OK)
        cluster_send_router(c, routing_id, &c->scratch);

    if (msg->last && peer != NULL) {
        peer->sync_done = true;
        LOG_NOTICE("cluster", "handoff received from=%s keys=%" PRIu64, from,
                   peer->sync_keys);
        if (peer->resync_running)
            resync_ended(c, peer);
    }
}

/* ---- dropping keys that moved away ---- */

typedef struct drop_ctx {
    const view_t *view;
} drop_ctx_t;

static bool not_held(const store_entry_t *e, void *arg)
{
    drop_ctx_t *ctx = arg;
    return !view_holds(ctx->view, e->hash, (uint32_t)ctx->view->self);
}

static bool handoffs_running(cluster_t *c)
{
    for (size_t i = 0; i < c->peer_count; i++) {
        if (c->peers[i].handoff != NULL)
            return true;
    }
    return false;
}

static void run_drop(cluster_t *c, int64_t now)
{
    /* Only a settled cluster drops: while anyone joins, the keys may
     * still have to be streamed from here. */
    if (c->self.state != MEMBER_UP || view_has_joining(c->view) || handoffs_running(c)) {
        c->drop_at_ms = now + 1000;
        return;
    }
    c->drop_at_ms = 0;

    drop_ctx_t ctx = {.view = c->view};
    uint64_t dropped = store_drop_if(c->node->store, not_held, &ctx);
    if (dropped > 0) {
        stat_add(&c->node->stats.keys_dropped, dropped);
        LOG_NOTICE("cluster", "dropped keys this node no longer owns count=%" PRIu64,
                   dropped);
    }
}

/* ---- lifecycle ---- */

void membership_tick(cluster_t *c, int64_t now)
{
    tick_join(c, now);
    for (size_t i = 0; i < c->peer_count; i++) {
        if (c->peers[i].handoff != NULL)
            pump_handoff(c, &c->peers[i]);
    }
    if (c->drop_at_ms != 0 && now >= c->drop_at_ms)
        run_drop(c, now);
}

int64_t membership_next_deadline(cluster_t *c)
{
    int64_t now = cluster_now_ms();
    int64_t next = c->drop_at_ms;
    int64_t soon = now + MEMBERSHIP_TICK_MS;
    if (c->join_state == JOIN_SEEDING && (next == 0 || c->next_join_ms < next))
        next = c->next_join_ms;
    if ((c->join_state == JOIN_SUBSCRIBING || c->join_state == JOIN_SYNCING ||
         handoffs_running(c)) && (next == 0 || soon < next))
        next = soon;
    return next;
}

pc_err_t membership_start(cluster_t *c)
{
    const config_t *cfg = &c->node->cfg;
    snprintf(c->self.id, sizeof c->self.id, "%s", cfg->node_id);
    snprintf(c->self.host, sizeof c->self.host, "%s", cfg->advertise);
    c->self.port = cfg->port;
    c->self.peer_port = cfg->peer_port;
    c->self.pub_port = cfg->pub_port;
    c->self.incarnation = c->node->start_ms;

    c->seed_dealers = calloc(cfg->seed_count + 1, sizeof *c->seed_dealers);
    if (c->seed_dealers == NULL)
        return PC_ERR_NOMEM;

    size_t other_seeds = 0;
    for (size_t i = 0; i < cfg->seed_count; i++)
        other_seeds += !seed_is_self(c, &cfg->seeds[i]);

    if (other_seeds == 0) {
        c->self.state = MEMBER_UP;
        c->join_state = JOIN_DONE;
        LOG_NOTICE("cluster", "started a new cluster (no seeds) node=%s", c->self.id);
    } else {
        c->self.state = MEMBER_JOINING;
        c->join_state = JOIN_SEEDING;
        c->next_join_ms = cluster_now_ms();
        LOG_NOTICE("cluster", "joining through seeds count=%zu", other_seeds);
    }
    membership_publish_view(c);
    return PC_OK;
}

void membership_stop(cluster_t *c)
{
    if (c->seed_dealers != NULL)
        close_seed_dealers(c);
    free(c->seed_dealers);
    c->seed_dealers = NULL;

    for (size_t i = 0; i < c->peer_count; i++) {
        membership_remove_peer_sockets(c, &c->peers[i]);
        free_handoff(&c->peers[i].handoff);
    }
    free(c->peers);
    c->peers = NULL;
    c->peer_count = 0;

    /* Every reader has stopped, but call_rcu callbacks may still hold
     * older views: wait for them before freeing the last one. */
    if (c->view != NULL) {
        rcu_xchg_pointer(&c->node->view, NULL);
        urcu_memb_synchronize_rcu();
        view_destroy(&c->view);
    }
    urcu_memb_barrier();
}
