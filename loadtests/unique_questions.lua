-- wrk: every request a question never asked before in the run (a support question built from parts:
-- 32 questions x 24 products x 6 sizes x 8 styles x 10 materials x 12 colours = 4,423,680 contents, each after one
-- of 16 openers and before one of 12 endings). Same body for the floor and the gateway.
local openers = {"Hi,", "Hello,", "Hey there,", "Good morning,", "Quick question:", "Sorry to bother you,",
  "Bonjour,", "Salut,", "Excuse me,", "Hi team,", "Hello again,", "Dear support,", "Hiya,", "Bonsoir,",
  "Allo,", "Greetings,"}
local questions = {"how do I get a refund for the", "where is my order with the", "can I return the",
  "how long does delivery take for the", "do you ship internationally the", "how do I cancel my order of the",
  "is there a warranty on the", "can I exchange the", "what payment methods can I use for the",
  "how do I track the", "comment me faire rembourser le", "où est ma commande avec le",
  "puis-je retourner le", "quel est le délai de livraison pour le", "comment annuler la commande du",
  "y a-t-il une garantie sur le", "is the following in stock:", "do you have a promo code for the",
  "how do I use a gift card on the", "can I pay in installments for the", "why was I charged twice for the",
  "how do I change the delivery address for the", "can I pick up in store the", "what sizes exist for the",
  "est-ce que vous livrez le", "how do I reset my password to buy the", "do you price match the",
  "is gift wrapping available for the", "can I order by phone the", "what are your opening hours to collect the",
  "how do I download the invoice for the", "can I get a discount on the"}
local products = {"blue running shoes", "wool winter coat", "espresso machine", "leather handbag",
  "kids bicycle", "garden chairs", "noise cancelling headphones", "yoga mat", "cast iron pan",
  "linen shirt", "desk lamp", "hiking backpack", "robe d'été", "chaussures de randonnée",
  "machine à café", "sac à dos", "smart watch", "silk scarf", "ceramic vase", "board game",
  "camping tent", "electric kettle", "denim jacket", "phone case"}
-- a size, a style, a material and a colour before the product, so that the question's content is new and not only
-- its greeting and ending, which the cache strips as manners (without them, half the "new" questions were near
-- duplicates): 4.4M contents, each run starting at a random one (a warm-up and the measured run do not meet)
local sizes = {"small", "medium", "large", "tiny", "giant", "double"}
local styles = {"classic", "vintage", "slim", "travel", "deluxe", "mini", "compact", "outdoor"}
local materials = {"cotton", "steel", "bamboo", "glass", "wool", "oak", "copper", "velvet", "marble", "canvas"}
local colours = {"red", "navy", "olive", "grey", "black", "white", "beige", "green", "pink", "yellow", "brown",
  "purple"}
local endings = {"?", " please?", ", thanks!", " today?", "? merci", " asap?", " this week?",
  "? Thank you.", " before Friday?", "? cheers", " s'il vous plaît ?", " for my sister?"}
local n = 0
local contents = #questions * #products * #sizes * #styles * #materials * #colours
local start = 0
local thread_id = 0
setup = function(thread) thread:set("thread_id", thread_id); thread_id = thread_id + 1 end
init = function() math.randomseed(os.time() * 7 + thread_id); start = math.random(0, contents - 1) end
request = function()
  n = n + 1
  -- contents walked with a stride (neighbours differ in every part), none twice in a run of under 4.4M requests
  local i = (start + n * 7919 + thread_id * 104729) % contents
  local q = i % #questions; i = math.floor(i / #questions)
  local p = i % #products; i = math.floor(i / #products)
  local z = i % #sizes; i = math.floor(i / #sizes)
  local s = i % #styles; i = math.floor(i / #styles)
  local m = i % #materials; i = math.floor(i / #materials)
  local c = i % #colours
  local o, e = (n * 5) % #openers, (n * 7) % #endings
  local text = openers[o + 1] .. " " .. questions[q + 1] .. " " .. sizes[z + 1] .. " " .. styles[s + 1] .. " " ..
    materials[m + 1] .. " " .. colours[c + 1] .. " " .. products[p + 1] .. endings[e + 1]
  local body = '{"model":"gpt-3.5-turbo","messages":[{"role":"system","content":"You are a helpful support ' ..
    'assistant for Aurora Commerce."},{"role":"user","content":"' .. text .. '"}]}'
  return wrk.format("POST", "/v1/chat/completions",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer sk-bench"}, body)
end
