/* net/conns.h: the client connections of an evhttp server, tracked so that one that has not
 * completed a request within a deadline of its accept or of its previous request is cut.
 * Slowloris: headers dribbled a byte at a time keep resetting libevent's idle timer, never
 * this deadline. Busy connections (a call in progress: a long stream) are never cut. */
#ifndef KILN_NET_CONNS_H
#define KILN_NET_CONNS_H
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

typedef struct net_conns net_conns;

net_conns *net_conns_new(void);
/* Drops the references held on tracked connections; after evhttp_free. NULL is fine. */
void net_conns_free(net_conns *t);
/* The body of an evhttp_set_bevcb callback: a new bufferevent for an accepted connection,
 * tracked (or untracked, under memory pressure: libevent's idle timer still applies). */
struct bufferevent *net_conns_accept(net_conns *t, struct event_base *base);
/* A request arrived complete on conn: its deadline restarts. */
void net_conns_touch(net_conns *t, struct evhttp_connection *conn);
/* A call starts (+1) or ends (-1) on conn; its deadline restarts either way. */
void net_conns_busy(net_conns *t, struct evhttp_connection *conn, int delta);
/* Bytes written to live connections and not yet sent: a draining server waits for 0 before
 * it exits, or the last events of a stream are lost with the connection. */
size_t net_conns_unsent(const net_conns *t);
/* Forgets connections libevent has freed and shuts those idle past timeout_s; call it from
 * a timer (a few times a second). */
void net_conns_sweep(net_conns *t, double timeout_s);
#endif
