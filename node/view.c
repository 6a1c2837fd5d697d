/* view: membership snapshots and their rings. */
#include "view.h"

#include <stdlib.h>
#include <string.h>

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const member_t *)a)->id, ((const member_t *)b)->id);
}

/* Builds the ring of the members matching the filter; leaves *ring NULL
 * when no member matches. */
static pc_err_t build_ring(view_t *view, bool include_joining, uint32_t vnodes,
                           ring_t **ring, uint32_t **map)
{
    const char **ids = calloc(view->count, sizeof *ids);
    *map = calloc(view->count, sizeof **map);
    if (ids == NULL || *map == NULL) {
        free(ids);
        return PC_ERR_NOMEM;
    }

    size_t n = 0;
    for (size_t i = 0; i < view->count; i++) {
        uint8_t state = view->members[i].state;
        if (state == MEMBER_UP || (include_joining && state == MEMBER_JOINING)) {
            ids[n] = view->members[i].id;
            (*map)[n] = (uint32_t)i;
            n++;
        }
    }

    pc_err_t err = PC_OK;
    *ring = NULL;
    if (n > 0)
        err = ring_new(ids, n, vnodes, ring);
    free(ids);
    return err;
}

pc_err_t view_new(const member_t *members, size_t count, const char *self_id,
                  uint32_t vnodes, uint32_t replicas, uint64_t generation,
                  view_t **out)
{
    if (count == 0 || count > VIEW_MAX_MEMBERS)
        return PC_ERR_INVALID;

    view_t *view = calloc(1, sizeof *view);
    if (view == NULL)
        return PC_ERR_NOMEM;
    view->members = malloc(count * sizeof *members);
    if (view->members == NULL) {
        free(view);
        return PC_ERR_NOMEM;
    }
    memcpy(view->members, members, count * sizeof *members);
    qsort(view->members, count, sizeof *members, member_cmp);
    view->count = count;
    view->replicas = replicas > VIEW_MAX_REPLICAS ? VIEW_MAX_REPLICAS : replicas;
    view->generation = generation;
    view->self = -1;

    pc_err_t err = PC_OK;
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && strcmp(view->members[i - 1].id, view->members[i].id) == 0)
            err = PC_ERR_INVALID;
        if (strcmp(view->members[i].id, self_id) == 0)
            view->self = (int)i;
    }
    if (view->self < 0)
        err = PC_ERR_INVALID;

    if (err == PC_OK)
        err = build_ring(view, false, vnodes, &view->read_ring, &view->read_map);
    if (err == PC_OK)
        err = build_ring(view, true, vnodes, &view->write_ring, &view->write_map);
    if (err != PC_OK) {
        view_destroy(&view);
        return err;
    }
    *out = view;
    return PC_OK;
}

void view_destroy(view_t **view)
{
    if (view == NULL || *view == NULL)
        return;
    view_t *v = *view;
    ring_destroy(&v->read_ring);
    ring_destroy(&v->write_ring);
    free(v->read_map);
    free(v->write_map);
    free(v->members);
    free(v);
    *view = NULL;
}

/* Writes the write ring's preference list of the key, as member indexes. */
static size_t placement(const view_t *view, uint64_t hash, uint32_t *out)
{
    if (view->write_ring == NULL)
        return 0;
    size_t n = ring_preference(view->write_ring, hash, view->replicas, out);
    for (size_t i = 0; i < n; i++)
        out[i] = view->write_map[out[i]];
    return n;
}

size_t view_owners(const view_t *view, uint64_t hash, uint32_t *out)
{
    uint32_t listed[VIEW_MAX_REPLICAS];
    size_t n = placement(view, hash, listed);
    size_t owners = 0;
    for (size_t i = 0; i < n; i++) {
        if (view->members[listed[i]].state == MEMBER_UP)
            out[owners++] = listed[i];
    }
    if (owners > 0 || view->read_ring == NULL)
        return owners;

    n = ring_preference(view->read_ring, hash, view->replicas, out);
    for (size_t i = 0; i < n; i++)
        out[i] = view->read_map[out[i]];
    return n;
}

size_t view_holders(const view_t *view, uint64_t hash, uint32_t *out)
{
    size_t n = view_owners(view, hash, out);

    uint32_t listed[VIEW_MAX_REPLICAS];
    size_t m = placement(view, hash, listed);
    for (size_t i = 0; i < m; i++) {
        bool seen = false;
        for (size_t j = 0; j < n; j++)
            seen = seen || out[j] == listed[i];
        if (!seen)
            out[n++] = listed[i];
    }
    return n;
}

bool view_owns(const view_t *view, uint64_t hash, uint32_t member)
{
    uint32_t owners[VIEW_MAX_REPLICAS];
    size_t n = view_owners(view, hash, owners);
    for (size_t i = 0; i < n; i++) {
        if (owners[i] == member)
            return true;
    }
    return false;
}

bool view_holds(const view_t *view, uint64_t hash, uint32_t member)
{
    uint32_t holders[2 * VIEW_MAX_REPLICAS];
    size_t n = view_holders(view, hash, holders);
    for (size_t i = 0; i < n; i++) {
        if (holders[i] == member)
            return true;
    }
    return false;
}

int view_find(const view_t *view, const char *id)
{
    size_t lo = 0;
    size_t hi = view->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(view->members[mid].id, id);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

bool view_has_joining(const view_t *view)
{
    for (size_t i = 0; i < view->count; i++) {
        if (view->members[i].state == MEMBER_JOINING)
            return true;
    }
    return false;
}

const char *member_state_name(uint8_t state)
{
    return state == MEMBER_UP ? "up" : "joining";
}
