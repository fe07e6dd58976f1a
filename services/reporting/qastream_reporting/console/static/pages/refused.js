import "../console.js";
