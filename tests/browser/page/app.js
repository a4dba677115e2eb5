// The app's project page, reduced to what the seed's App.tsx did when a project opened:
// fetch it from the app's API (this origin), reconcile it when it is generating or lists
// clips (the reconciler, another origin), refetch it when the report says `corrected`.
import { reconcileProject } from "./reconcile.js";

const params = new URLSearchParams(location.search);
const reconciler = params.get("reconciler");
const authHost = params.get("auth");
let idToken = null;

const show = (id, text) => { document.getElementById(id).textContent = text; };

async function signIn(email, password) {
  const answer = await fetch(
    `http://${authHost}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=demo-key`,
    { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password, returnSecureToken: true }) });
  if (!answer.ok) {
    throw new Error(`sign-in refused: ${answer.status} ${await answer.text()}`);
  }
  const body = await answer.json();
  idToken = body.idToken;
  show("user", `signed in as ${email}`);
  return body.localId;
}

const options = () => ({ baseUrl: reconciler, getIdToken: async () => idToken });

async function fetchProject(projectId) {
  const answer = await fetch(`/api/reel/projects/${encodeURIComponent(projectId)}`);
  if (!answer.ok) {
    throw new Error(`fetchProject: ${answer.status}`);
  }
  return answer.json();
}

function described(error) {
  return { name: error.name, status: error.status ?? null, code: error.code ?? null,
           message: error.message, retryAfterMs: error.retryAfterMs ?? null };
}

function listed(project) {
  return project.clipFilenames.filter((clip) => clip !== null).length;
}

async function openProject(projectId) {
  const outcome = { projectId, report: null, error: null };
  show("title", projectId);
  let project = await fetchProject(projectId);
  outcome.before = project;
  show("before-status", project.status);
  show("before-clips", `${listed(project)} of ${project.clipFilenames.length}`);
  if (project.status === "generating" || project.clipFilenames.length > 0) {
    try {
      const { report } = await reconcileProject(projectId, options());
      outcome.report = report;
      show("action", `reconciled: ${report.action}`);
      show("report", JSON.stringify(report, null, 2));
      if (report.action === "corrected") {
        project = await fetchProject(projectId);
      }
    } catch (error) {
      outcome.error = described(error);
      show("error", `${error.name}: ${error.message}`);
    }
  }
  outcome.after = project;
  show("after-status", project.status);
  show("after-clips", `${listed(project)} of ${project.clipFilenames.length}`);
  return outcome;
}

/** One call, its report or its error. */
async function reconcile(projectId) {
  try {
    return { report: (await reconcileProject(projectId, options())).report, error: null };
  } catch (error) {
    return { report: null, error: described(error) };
  }
}

/** `n` calls at once, as a page reopened in several tabs. */
async function burst(projectId, n) {
  return Promise.all(Array.from({ length: n }, () => reconcile(projectId)));
}

window.reelPage = { signIn, openProject, reconcile, burst };
