// Usage: node doiuse.mjs FILE.html CLIENT_GLOB...
// Prints doiuse-email's result ({success, errors, notes}) as JSON.
import { readFileSync } from "node:fs";
import { doIUseEmail } from "@jsx-email/doiuse-email";

const [file, ...clients] = process.argv.slice(2);
const html = readFileSync(file, "utf8");
const result = doIUseEmail(html, { emailClients: clients });
process.stdout.write(JSON.stringify(result, null, 2));
