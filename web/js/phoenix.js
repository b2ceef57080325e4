// A small Phoenix channels client, as Supabase Realtime speaks it with vsn=1.0.0 (every frame a
// JSON object {join_ref, ref, topic, event, payload}): enough for the dashboard's Realtime
// inspector to join a channel, hear broadcasts, presence and system messages, and broadcast.
// (realtime-js itself needs a bundler; this one is plain ES and talks to the project edge.)

const HEARTBEAT_MS = 25000;

export class PhoenixSocket {
  /** url: the project's `<api_url>/realtime/v1/websocket`; apikey: the project's anon (or service_role) key. */
  constructor(url, apikey) {
    const u = new URL(url);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.searchParams.set("apikey", apikey);
    u.searchParams.set("vsn", "1.0.0");
    this.url = u.toString();
    this.ref = 0;
    this.pending = new Map(); // ref -> {resolve, sentAt}
    this.channels = new Map(); // topic -> Channel
    this.onClose = () => {};
    this.onFrame = () => {};
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.addEventListener("open", () => {
        this.timer = setInterval(() => this.push("phoenix", "heartbeat", {}), HEARTBEAT_MS);
        resolve(this);
      }, { once: true });
      ws.addEventListener("error", () => reject(new Error("the project's realtime endpoint refused the connection")), { once: true });
      ws.addEventListener("close", (e) => {
        clearInterval(this.timer);
        for (const ch of this.channels.values()) ch.state = "closed";
        this.onClose(e);
      });
      ws.addEventListener("message", (e) => this.receive(e.data));
    });
  }

  get open() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  nextRef() {
    this.ref += 1;
    return String(this.ref);
  }

  /** Send a frame; resolves with the phx_reply's payload ({status, response}) and its round trip in ms. */
  push(topic, event, payload, joinRef = null) {
    const ref = this.nextRef();
    const sentAt = performance.now();
    const reply = new Promise((resolve) => this.pending.set(ref, { resolve, sentAt }));
    if (!this.open) return Promise.resolve({ status: "error", response: { reason: "not connected" }, ms: 0 });
    this.ws.send(JSON.stringify({ join_ref: joinRef, ref, topic, event, payload }));
    return reply;
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (Array.isArray(frame)) {
      const [join_ref, ref, topic, event, payload] = frame;
      frame = { join_ref, ref, topic, event, payload };
    }
    if (frame.event === "phx_reply" && frame.ref && this.pending.has(frame.ref)) {
      const { resolve, sentAt } = this.pending.get(frame.ref);
      this.pending.delete(frame.ref);
      resolve({ ...(frame.payload || {}), ms: performance.now() - sentAt });
    }
    const ch = this.channels.get(frame.topic);
    if (ch) ch.receive(frame);
    this.onFrame(frame);
  }

  channel(name, { config = {}, accessToken = null } = {}) {
    const ch = new Channel(this, `realtime:${name}`, config, accessToken);
    this.channels.set(ch.topic, ch);
    return ch;
  }

  close() {
    clearInterval(this.timer);
    if (this.ws) this.ws.close(1000, "closed by the inspector");
  }
}

export class Channel {
  constructor(socket, topic, config, accessToken) {
    this.socket = socket;
    this.topic = topic;
    this.config = config;
    this.accessToken = accessToken;
    this.state = "closed";
    this.joinRef = null;
    this.listeners = [];
  }

  /** Resolves with the join's reply ({status: "ok" | "error", response}). */
  async join() {
    this.state = "joining";
    const payload = { config: this.config };
    if (this.accessToken) payload.access_token = this.accessToken;
    const ref = String(this.socket.ref + 1);
    this.joinRef = ref;
    const reply = await this.socket.push(this.topic, "phx_join", payload, ref);
    this.state = reply.status === "ok" ? "joined" : "errored";
    return reply;
  }

  on(fn) {
    this.listeners.push(fn);
  }

  receive(frame) {
    if (frame.event === "phx_close" || frame.event === "phx_error") this.state = "closed";
    for (const fn of this.listeners) fn(frame);
  }

  /** A broadcast to everyone on the channel; resolves with the ack when the join asked for one. */
  broadcast(event, payload) {
    return this.socket.push(this.topic, "broadcast", { type: "broadcast", event, payload }, this.joinRef);
  }

  track(meta) {
    return this.socket.push(this.topic, "presence", { type: "presence", event: "track", payload: meta }, this.joinRef);
  }

  leave() {
    this.state = "closed";
    return this.socket.push(this.topic, "phx_leave", {}, this.joinRef);
  }
}
