/* net/conns.h: the client side of an evhttp server (kiln serve, kiln gateway, their admin
 * listeners), in one place:
 *  - its listeners: accepting pauses at max_conns open connections (new clients wait in the
 *    listen backlog) and, for a moment, whenever accept runs out of file descriptors, instead
 *    of retrying in a loop; each condition is logged at most once per interval;
 *  - its connections, tracked so that one that has not completed a request within a deadline
 *    of its accept or of its previous request is cut (with a 408 when it began one).
 *    Slowloris: headers dribbled a byte at a time keep resetting libevent's idle timer, never
 *    this deadline. Busy connections (a call in progress: a long stream) are never cut;
 *  - each connection's input, checked before evhttp parses it: a request whose framing is
 *    ambiguous or malformed never reaches the application (net/front.h; 400, 414, 431, 501
 *    with an OpenAI-style JSON error; net/guard.c);
 *  - each connection's output: a client that stops reading is cut once max_unsent bytes
 *    wait for it, and the application's close callback cancels its request. */
#ifndef KILN_NET_CONNS_H
#define KILN_NET_CONNS_H
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "base/err.h"

typedef struct net_conns net_conns;

/* A new evhttp on base with the house settings: every method reaches cb (so a wrong one
 * gets the caller's JSON 405, not libevent's page), bodies up to max_body bytes, headers up
 * to 64 KiB, libevent's idle timeout timeout_s. NULL when out of memory. */
struct evhttp *net_http_new(struct event_base *base, size_t max_body, int timeout_s,
                            void (*cb)(struct evhttp_request *, void *), void *arg);

#define NET_MAX_UNSENT (8u << 20) /* default of net_conns_limit_unsent */

/* who prefixes log lines ("serve", "gateway"); max_conns <= 0: no limit. */
net_conns *net_conns_new(const char *who, int max_conns);
/* A client that leaves more than max_unsent bytes unread while more are written to it is
 * cut (its request cancelled through the application's close callback); 0: never. */
void net_conns_limit_unsent(net_conns *t, size_t max_unsent);
/* Drops the references held on tracked connections; after evhttp_free. NULL is fine. */
void net_conns_free(net_conns *t);
/* Binds http to host:port (0: any free port) and guards that listener; connections it
 * accepts are tracked (this sets http's bufferevent callback). Returns the bound port, or
 * KL_EIO with "cannot listen on HOST:PORT: <reason>" in err. */
int net_conns_listen(net_conns *t, struct evhttp *http, const char *host, int port, kl_err *err);
/* Stops accepting on every listener of t (a drain); open connections are not touched. */
void net_conns_close_listeners(net_conns *t);
/* Open client connections (as of the last sweep, plus those accepted since). */
int net_conns_count(const net_conns *t);
/* Times accept failed for want of a descriptor (or memory) since t was made. */
long net_conns_accept_errors(const net_conns *t);

/* The body of an evhttp_set_bevcb callback: a new bufferevent for an accepted connection,
 * tracked (or untracked, under memory pressure: libevent's idle timer still applies).
 * net_conns_listen installs it; call it yourself only for an evhttp bound some other way. */
struct bufferevent *net_conns_accept(net_conns *t, struct event_base *base);
/* A request arrived complete on conn: its deadline restarts. */
void net_conns_touch(net_conns *t, struct evhttp_connection *conn);
/* A call starts (+1) or ends (-1) on conn; its deadline restarts either way. */
void net_conns_busy(net_conns *t, struct evhttp_connection *conn, int delta);
/* Bytes written to live connections and not yet sent: a draining server waits for 0 before
 * it exits, or the last events of a stream are lost with the connection. */
size_t net_conns_unsent(const net_conns *t);
/* Forgets connections libevent has freed, shuts those idle past timeout_s, recounts the
 * open ones and resumes accepting when there is room again; call it from a timer (a few
 * times a second). */
void net_conns_sweep(net_conns *t, double timeout_s);

/* Raises the soft open-file limit to the hard one, then returns how many client connections
 * fit in it: want, or (limit - reserve) / per_conn when that is less (logged as a warning by
 * who, naming the limit); want <= 0: as many as fit, without a warning; 0 when not even one
 * fits. per_conn: descriptors one client may need (2 for a proxy: the client's and its
 * upstream's); reserve: the process's own. */
int net_fd_budget(const char *who, int want, int per_conn, int reserve);
#endif
