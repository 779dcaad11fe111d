/* net/status_page.h: the status page of kiln serve and kiln gateway (GET /): one HTML file
 * with its script inline (net/status.html), built into the binary, that polls the process's
 * own /metrics and charts the last minutes. No build step and no external assets, so it works
 * on an air-gapped host; the page needs nothing from the server but /metrics. */
#ifndef KILN_NET_STATUS_PAGE_H
#define KILN_NET_STATUS_PAGE_H
#include <event2/http.h>

/* Answers req with the page: 200, text/html, not cached, and a Content-Security-Policy that
 * lets it reach only its own origin. */
void net_status_page_send(struct evhttp_request *req);
#endif
