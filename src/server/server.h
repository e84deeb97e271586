/* Process lifecycle of `meridian serve`: configuration, storage, the HTTP server,
 * background sweeps, signals and graceful shutdown. */
#ifndef MERIDIAN_SERVER_H
#define MERIDIAN_SERVER_H

/* Runs the server with the arguments after "serve"; returns the exit status. */
int server_main(int argc, char **argv);

#endif
