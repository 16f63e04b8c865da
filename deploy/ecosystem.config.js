// pm2 process file for the snapkeep agent: `pm2 start deploy/ecosystem.config.js`.
// snapkeep reads .env from `cwd`; the real environment (and `env` below) wins over it.
module.exports = {
  apps: [
    {
      name: "snapkeep",
      script: "/usr/local/bin/snapkeep",
      args: "run",
      interpreter: "none", // a native binary, not a Node script
      cwd: "/srv/app", // where snapkeep's .env lives
      autorestart: true,
      // Back off when it keeps failing, and do not restart on a configuration error (exit 2):
      // it would fail the same way again. Fix the .env, then `pm2 restart snapkeep`.
      exp_backoff_restart_delay: 1000,
      stop_exit_codes: [2],
      // pm2 stops with SIGINT, which snapkeep treats like SIGTERM: a running backup gets
      // SHUTDOWN_GRACE (60 s) to finish and is then aborted cleanly. kill_timeout (ms) must be
      // above that, or pm2 SIGKILLs it mid-cleanup.
      kill_timeout: 120000,
      env: {
        LOG_FORMAT: "text", // "json" for log shippers
      },
    },
  ],
};
