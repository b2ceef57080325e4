// A project's Auth users (list, create, delete) and Storage (buckets, objects, upload,
// download), through the gateway's /platform/projects/<ref>/auth|storage routes, which check
// the caller's role and call the project's own APIs with its service_role key.

import { h } from "../dom.js";
import { del, get, post, session } from "../api.js";
import { field, form } from "../forms.js";
import { whyNot } from "../state.js";
import { projectContext, projectPage } from "./project.js";
import { button, busy, confirmDialog, errorNotice, fmtAgo, fmtBytes, table, toast } from "../ui.js";

export async function authUsers({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const manage = whyNot(perms, "projects.secrets");
  const box = h("div", { "aria-live": "polite" });
  const base = `/platform/projects/${project.ref}/auth/users`;

  async function draw() {
    try {
      const { users, total } = await get(base);
      box.replaceChildren(
        h("p", { class: "muted small" }, `${total} user${total === 1 ? "" : "s"}`),
        table([
          { label: "Email", cell: (u) => u.email || "" },
          { label: "Created", cell: (u) => (u.created_at ? fmtAgo(u.created_at) : "") },
          { label: "Last sign-in", cell: (u) => (u.last_sign_in_at ? fmtAgo(u.last_sign_in_at) : "never") },
          { label: "Confirmed", cell: (u) => (u.email_confirmed_at ? "yes" : "no") },
          { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (u) => {
            const b = button("Delete", () => busy(b, async () => {
              if (!await confirmDialog({ title: `Delete ${u.email}?`, body: "The user and their sessions are removed.", confirmLabel: "Delete", danger: true })) return;
              await del(`${base}/${u.id}`);
              toast(`Deleted ${u.email}`);
              await draw();
            }), { small: true, disabledReason: manage });
            b.setAttribute("aria-label", `Delete ${u.email}`);
            return b;
          } },
        ], users, { caption: "Users", empty: "No users yet." }));
    } catch (e) {
      box.replaceChildren(errorNotice(e));
    }
  }

  const create = form({
    label: "Create user", submitLabel: "Create user", disabledReason: manage,
    fields: [field({ name: "email", label: "Email", type: "email", required: true }),
             field({ name: "password", label: "Password", type: "password", required: true, autocomplete: "new-password" })],
    onSubmit: async (values, f) => {
      await post(base, { email: values.email, password: values.password, email_confirm: true });
      toast(`Created ${values.email}`);
      f.reset();
      await draw();
    },
  });
  await draw();
  await projectPage(project, {
    title: "Authentication users", heading: "Users", sub: "The people who sign in to your app (the project's Auth).",
    content: [h("section", { class: "card", "aria-labelledby": "users-h" }, h("h2", { id: "users-h" }, "Users"), box),
              h("section", { class: "card", "aria-labelledby": "new-user-h" }, h("h2", { id: "new-user-h" }, "Add a user"), create)],
  });
}

export async function storage({ params, query }) {
  const { project, perms } = await projectContext(params.ref);
  const manage = whyNot(perms, "projects.secrets");
  const base = `/platform/projects/${project.ref}/storage/buckets`;
  const bucket = query.get("bucket");
  const prefix = (query.get("prefix") || "").replace(/^\/+|\/+$/g, "");
  const content = [];
  try {
    const buckets = await get(base);
    content.push(h("section", { class: "card", "aria-labelledby": "b-h" }, h("h2", { id: "b-h" }, "Buckets"),
      table([
        { label: "Name", cell: (b) => h("a", { href: `/project/${project.ref}/storage?bucket=${encodeURIComponent(b.id)}` }, b.name) },
        { label: "Public", cell: (b) => (b.public ? "yes" : "no") },
        { label: "Size limit", cell: (b) => (b.file_size_limit ? fmtBytes(b.file_size_limit) : "") },
      ], buckets, { caption: "Buckets", empty: "No buckets yet." }),
      form({
        label: "Create bucket", submitLabel: "Create bucket", disabledReason: manage,
        fields: [field({ name: "name", label: "Bucket name", required: true }),
                 field({ name: "public", label: "Public (anyone with the URL can read)", type: "checkbox" })],
        onSubmit: async (values) => {
          await post(base, { name: values.name, public: Boolean(values.public) });
          toast(`Created ${values.name}`);
          location.assign(`/project/${project.ref}/storage?bucket=${encodeURIComponent(values.name)}`);
        },
      })));
    if (bucket) {
      const objects = await get(`${base}/${encodeURIComponent(bucket)}/objects?prefix=${encodeURIComponent(prefix)}`);
      const here = prefix ? `${prefix}/` : "";
      const file = h("input", { type: "file", id: "upload-file", "aria-label": "File to upload" });
      const upload = button("Upload", () => busy(upload, async () => {
        const f = file.files && file.files[0];
        if (!f) return toast("Choose a file first", "warn");
        const url = `${base}/${encodeURIComponent(bucket)}/object?name=${encodeURIComponent(here + f.name)}`;
        const response = await fetch(url, { method: "PUT", body: f, credentials: "same-origin",
          headers: { "Content-Type": f.type || "application/octet-stream", "X-CSRF-Token": session.csrf || "" } });
        if (!response.ok) {
          const data = await response.json().catch(() => ({}));
          return toast(data.message || `upload failed (${response.status})`, "error");
        }
        toast(`Uploaded ${f.name}`);
        location.reload();
      }), { disabledReason: manage });
      content.push(h("section", { class: "card", "aria-labelledby": "o-h" },
        h("h2", { id: "o-h" }, `${bucket}/${here}`),
        table([
          { label: "Name", cell: (o) => (o.id === null
            ? h("a", { href: `/project/${project.ref}/storage?bucket=${encodeURIComponent(bucket)}&prefix=${encodeURIComponent(here + o.name)}` }, `${o.name}/`)
            : h("a", { href: `${base}/${encodeURIComponent(bucket)}/object?name=${encodeURIComponent(here + o.name)}`, download: o.name }, o.name)) },
          { label: "Size", num: true, cell: (o) => (o.metadata ? fmtBytes(o.metadata.size) : "") },
          { label: "Type", cell: (o) => (o.metadata ? o.metadata.mimetype : "folder") },
          { label: "Updated", cell: (o) => (o.updated_at ? fmtAgo(o.updated_at) : "") },
        ], objects, { caption: "Objects", empty: "This folder is empty." }),
        h("div", { class: "form-actions" }, file, upload)));
    }
  } catch (e) {
    content.push(errorNotice(e));
  }
  await projectPage(project, { title: "Storage", heading: "Storage", sub: "Buckets and files of the project's Storage API.", content });
}
