/* SPDX-License-Identifier: MIT */
/*
 * Intrusive doubly linked lists, the one implementation behind every list
 * whose members come and go in O(1) from anywhere in it: an mcentral's
 * partial and full spans, a cache's partial, full and empty spans per
 * class (mcache.c), the arena chunk lists (reuse, ready, quarantine, warm,
 * an arena's used chunks), and the registries of thread caches
 * (mh_caches) and of page caches (pagecache.c).
 *
 * A member embeds a struct list_node and can be on one list through it at
 * a time; list_entry() turns a node back into its member (container_of).
 * A list knows its head, its tail and how many nodes it holds; an all-zero
 * list is empty. A node off every list has NULL links. Nothing here locks:
 * each list is guarded by what guards its owner.
 *
 * Why intrusive: a member leaves a list it is in the middle of (a span
 * whose last object was freed, a quarantined chunk released out of order)
 * without a search, and being listed costs no allocation, which an
 * allocator could not make here anyway.
 */
#ifndef MHEAP_LIST_H
#define MHEAP_LIST_H

#include <stddef.h>
#include <stdint.h>

struct list_node {
	struct list_node *next, *prev;
};

struct list {
	struct list_node *head, *tail;
	uint64_t count;
};

/* The struct of type `type` whose member `member` is node n, or NULL for a
 * NULL n. */
#define list_entry(n, type, member) ({ \
	struct list_node *n_ = (n); \
	n_ ? (type *)((char *)n_ - offsetof(type, member)) : (type *)NULL; \
})

/* Every member pos of list l, from the head; pos must not leave the list
 * in the body (take the next one first for that). */
#define list_for_each(pos, l, member) \
	for (pos = list_entry((l)->head, __typeof__(*pos), member); pos; \
	     pos = list_entry(pos->member.next, __typeof__(*pos), member))

static inline void list_push_tail(struct list *l, struct list_node *n)
{
	n->next = NULL;
	n->prev = l->tail;
	if (l->tail)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
	l->count++;
}

static inline void list_push_head(struct list *l, struct list_node *n)
{
	n->prev = NULL;
	n->next = l->head;
	if (l->head)
		l->head->prev = n;
	else
		l->tail = n;
	l->head = n;
	l->count++;
}

/* Take n, which is on l, off it. */
static inline void list_remove(struct list *l, struct list_node *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	n->next = n->prev = NULL;
	l->count--;
}

/* Take the first (last) node off l, or NULL when it is empty. */
static inline struct list_node *list_pop_head(struct list *l)
{
	struct list_node *n = l->head;

	if (n)
		list_remove(l, n);
	return n;
}

static inline struct list_node *list_pop_tail(struct list *l)
{
	struct list_node *n = l->tail;

	if (n)
		list_remove(l, n);
	return n;
}

/* Move every node of from, in order, to the head of to; from is empty
 * afterwards. */
static inline void list_splice_head(struct list *to, struct list *from)
{
	if (!from->head)
		return;
	from->tail->next = to->head;
	if (to->head)
		to->head->prev = from->tail;
	else
		to->tail = from->tail;
	to->head = from->head;
	to->count += from->count;
	*from = (struct list){ 0 };
}

#endif
