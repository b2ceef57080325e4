// Values the API accepts, for the dashboard's pickers (the server checks them again).

export const REGIONS = [
  ["us-east-1", "US East (N. Virginia)"], ["us-east-2", "US East (Ohio)"], ["us-west-1", "US West (N. California)"],
  ["us-west-2", "US West (Oregon)"], ["ca-central-1", "Canada (Central)"], ["sa-east-1", "South America (São Paulo)"],
  ["eu-west-1", "EU West (Ireland)"], ["eu-west-2", "EU West (London)"], ["eu-west-3", "EU West (Paris)"],
  ["eu-central-1", "EU Central (Frankfurt)"], ["eu-central-2", "EU Central (Zurich)"], ["eu-north-1", "EU North (Stockholm)"],
  ["ap-south-1", "Asia Pacific (Mumbai)"], ["ap-southeast-1", "Asia Pacific (Singapore)"], ["ap-southeast-2", "Asia Pacific (Sydney)"],
  ["ap-northeast-1", "Asia Pacific (Tokyo)"], ["ap-northeast-2", "Asia Pacific (Seoul)"], ["ap-east-1", "Asia Pacific (Hong Kong)"],
];

export const ROLES = [["read_only", "Read-only"], ["member", "Member"], ["admin", "Admin"], ["owner", "Owner"]];

export function regionName(code) {
  const r = REGIONS.find(([c]) => c === code);
  return r ? r[1] : code;
}
