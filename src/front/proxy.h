/* The front's forwarding (http_handlers for http.c): each request goes to one region,
 * with its body streamed up and the response streamed back through pipes to a relay
 * thread (httpc_relay), so nothing is buffered whole. Upload Locations get the region
 * pinned; every forwarded response says Meridian-Region. */
#ifndef MERIDIAN_FRONT_PROXY_H
#define MERIDIAN_FRONT_PROXY_H

#include "http.h"

/* The handler table; its arg must be set to the struct front. */
extern const struct http_handlers proxy_handlers;

#endif
