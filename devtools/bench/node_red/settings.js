// Node-RED settings for the bench peer: loopback only, no editor, the flow file beside this one,
// and the `pg` client handed to function nodes (a maker adds it the same way, or through a
// contributed PostgreSQL node; the function node keeps the one multi-row INSERT visible).
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.NODE_RED_PORT || "1880", 10),
    httpAdminRoot: false,
    flowFile: process.env.NODE_RED_FLOW,
    credentialSecret: false,
    logging: { console: { level: "info", metrics: false, audit: false } },
    functionGlobalContext: { pg: require("pg") },
    editorTheme: { projects: { enabled: false } },
};
